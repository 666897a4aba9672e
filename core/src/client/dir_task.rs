//! Directory operations ([`crate::dirnode::ops`]) as client [`Task`](super::Task)s, so every
//! runtime runs them with the same loop as file transfers. A directory operation may ask for a
//! new RSA key ([`super::Step::NeedKey`]); the runtime answers from its key source.

use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::ops::{
    DirCache, DirOpError, Found, Link, LinkEvent, Linked, List, ListEvent, Lookup, LookupEvent,
    Mkdir, MkdirAt, MkdirAtEvent, MkdirEvent, Move, MoveEvent, Unlink, UnlinkEvent,
};
use crate::dirnode::{Child, Directory};
use crate::op::ClientOp;
use crate::time::Instant;

/// What a directory operation's event means to its driver.
#[derive(Debug)]
pub enum DirEvent<T> {
    Progress,
    NeedKey,
    Done(T),
    Failed(DirOpError),
}

/// The calls every directory operation shares beyond [`ClientOp`].
pub trait DirOperation: ClientOp {
    /// What the operation produces.
    type Output;
    /// What one of its events means.
    fn classify(event: Self::Event) -> DirEvent<Self::Output>;
    /// A fresh key for a directory the operation must make.
    fn provide_key(&mut self, now: Instant, key: MutableKey);
    /// No key can be had: the operation fails without making the directory.
    fn key_unavailable(&mut self, now: Instant, reason: String);
    /// Give `cache` what the operation learned (once it is finished).
    fn return_to(&mut self, cache: &mut DirCache);
}

macro_rules! dir_operation {
    ($op:ty, $event:ident, $output:ty, keys: $keys:tt) => {
        impl DirOperation for $op {
            type Output = $output;
            fn classify(event: $event) -> DirEvent<$output> {
                dir_operation!(@classify event, $event, $keys)
            }
            fn provide_key(&mut self, now: Instant, key: MutableKey) {
                dir_operation!(@provide self, now, key, $keys)
            }
            fn key_unavailable(&mut self, now: Instant, reason: String) {
                dir_operation!(@unavailable self, now, reason, $keys)
            }
            fn return_to(&mut self, cache: &mut DirCache) {
                <$op>::return_to(self, cache)
            }
        }
    };
    (@classify $e:ident, $event:ident, yes) => {
        match $e {
            $event::Progress(_) => DirEvent::Progress,
            $event::NeedKey => DirEvent::NeedKey,
            $event::Done(v) => DirEvent::Done(v),
            $event::Failed(e) => DirEvent::Failed(e),
        }
    };
    (@classify $e:ident, $event:ident, no) => {
        match $e {
            $event::Progress(_) => DirEvent::Progress,
            $event::Done(v) => DirEvent::Done(v),
            $event::Failed(e) => DirEvent::Failed(e),
        }
    };
    (@provide $s:ident, $now:ident, $key:ident, yes) => {
        $s.provide_key($now, $key)
    };
    (@provide $s:ident, $now:ident, $key:ident, no) => {{
        // This operation never asks for a key; one offered anyway is simply not used.
        let _ = ($now, $key);
    }};
    (@unavailable $s:ident, $now:ident, $reason:ident, yes) => {
        $s.key_unavailable($now, $reason)
    };
    (@unavailable $s:ident, $now:ident, $reason:ident, no) => {{
        let _ = ($now, $reason);
    }};
}

dir_operation!(List, ListEvent, Directory, keys: no);
dir_operation!(Lookup, LookupEvent, Found, keys: no);
dir_operation!(MkdirAt, MkdirAtEvent, Cap, keys: yes);
dir_operation!(Link, LinkEvent, Linked, keys: yes);
dir_operation!(Unlink, UnlinkEvent, Child, keys: no);

impl DirOperation for Mkdir {
    type Output = Cap;
    fn classify(event: MkdirEvent) -> DirEvent<Cap> {
        match event {
            MkdirEvent::Progress(_) => DirEvent::Progress,
            MkdirEvent::NeedKey => DirEvent::NeedKey,
            MkdirEvent::Done(cap) => DirEvent::Done(cap),
            MkdirEvent::Failed(e) => DirEvent::Failed(e),
        }
    }
    fn provide_key(&mut self, now: Instant, key: MutableKey) {
        Mkdir::provide_key(self, now, key)
    }
    fn key_unavailable(&mut self, _now: Instant, reason: String) {
        Mkdir::key_unavailable(self, reason)
    }
    fn return_to(&mut self, cache: &mut DirCache) {
        Mkdir::return_to(self, cache)
    }
}

impl DirOperation for Move {
    type Output = ();
    fn classify(event: MoveEvent) -> DirEvent<()> {
        match event {
            MoveEvent::Progress(_) => DirEvent::Progress,
            MoveEvent::Done => DirEvent::Done(()),
            MoveEvent::Failed(e) => DirEvent::Failed(e),
        }
    }
    fn provide_key(&mut self, _now: Instant, _key: MutableKey) {}
    fn key_unavailable(&mut self, _now: Instant, _reason: String) {}
    fn return_to(&mut self, cache: &mut DirCache) {
        Move::return_to(self, cache)
    }
}
