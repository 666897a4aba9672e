//! Which connection carries an operation's requests to each server: the client's table of live
//! connections (one per server, opened lazily, replaced once it breaks) and each operation's own
//! view (the connections it used, the servers it reached or could not reach).
//!
//! A runtime owns the sockets and the lock around the table; the choices are made here. A
//! connection is held through a shared handle `C` (an `Arc` of the runtime's connection) whose
//! target implements [`ServerLink`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use crate::placement::ServerId;

use super::report::{ClientError, Reach};
use super::routes::{OpId, Routes};

/// What the engine needs of a runtime's connection: its routes, locked (a connection is
/// closed once its routes are; an operation that ends drops its routes).
pub trait ServerLink {
    /// What reaches an operation (its channel's sender).
    type Sink;
    fn routes(&self) -> impl DerefMut<Target = Routes<Self::Sink>> + '_;
}

/// A client's live connections, one per server, shared by all its operations (which it
/// numbers, so each connection can tell their requests apart).
#[derive(Debug)]
pub struct ConnectionTable<C> {
    live: BTreeMap<ServerId, C>,
    opened: u64,
    next_op: OpId,
}

impl<C> Default for ConnectionTable<C> {
    fn default() -> Self {
        ConnectionTable {
            live: BTreeMap::new(),
            opened: 0,
            next_op: 0,
        }
    }
}

impl<C> ConnectionTable<C>
where
    C: Clone + Deref,
    C::Target: ServerLink,
{
    pub fn new() -> Self {
        Self::default()
    }

    /// The open connection to `server`, if there is one.
    pub fn live(&self, server: &ServerId) -> Option<C> {
        self.live
            .get(server)
            .filter(|c| !c.routes().is_closed())
            .cloned()
    }

    /// A connection to `server` the caller just opened (without holding its lock, so one slow
    /// server does not hold up the others). Returns the connection to use, and the one to close
    /// after the lock is released: `fresh` if another operation installed a live one first,
    /// else the dead connection it replaces.
    pub fn install(&mut self, server: ServerId, fresh: C) -> (C, Option<C>) {
        self.opened += 1;
        match self.live(&server) {
            Some(existing) => (existing, Some(fresh)),
            None => {
                let old = self.live.insert(server, fresh.clone());
                (fresh, old)
            }
        }
    }

    /// A number for a new operation, distinct from every other's.
    pub fn next_op(&mut self) -> OpId {
        self.next_op += 1;
        self.next_op
    }

    /// Connections opened so far (a measure of reuse).
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Every connection, for closing the client.
    pub fn take_all(&mut self) -> Vec<C> {
        std::mem::take(&mut self.live).into_values().collect()
    }
}

/// How an operation reaches a server next.
#[derive(Debug)]
pub enum Pick<C> {
    /// Over this connection, which it has used before.
    Use(C),
    /// Not at all: connecting failed earlier in this operation.
    Unreachable,
    /// Get a connection from the client (opening one if needed), then [`OpLinks::opened`].
    Open,
}

/// One operation's connections and reach. Dropping it tells each connection the operation
/// has ended.
#[derive(Debug)]
pub struct OpLinks<C>
where
    C: Deref,
    C::Target: ServerLink,
{
    op: OpId,
    used: BTreeMap<ServerId, C>,
    reach: Reach,
}

impl<C> OpLinks<C>
where
    C: Clone + Deref,
    C::Target: ServerLink,
{
    /// For operation `op` (distinct among the client's operations).
    pub fn new(op: OpId) -> Self {
        OpLinks {
            op,
            used: BTreeMap::new(),
            reach: Reach::default(),
        }
    }

    pub fn op(&self) -> OpId {
        self.op
    }

    pub fn pick(&self, server: ServerId) -> Pick<C> {
        match self.used.get(&server) {
            Some(c) if !c.routes().is_closed() => Pick::Use(c.clone()),
            _ if self.reach.is_unreachable(&server) => Pick::Unreachable,
            _ => Pick::Open,
        }
    }

    /// What getting a connection to `server` (listening at `addr`, if known) gave after
    /// [`Pick::Open`]: the connection to use, or `None` if it failed (the server then stays
    /// unreachable for this operation, and the error is reported if no server was reached).
    pub fn opened(
        &mut self,
        server: ServerId,
        addr: Option<SocketAddr>,
        got: Result<C, String>,
    ) -> Option<C> {
        match got {
            Ok(c) => {
                self.reach.reached(server);
                if let Some(old) = self.used.insert(server, c.clone()) {
                    old.routes().forget_op(self.op);
                }
                Some(c)
            }
            Err(why) => {
                let addr = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                self.reach.unreachable(server, addr, why);
                None
            }
        }
    }

    /// The error to report for the operation's failure `e`: "unreachable" if no server was
    /// reached.
    pub fn failure(&self, e: ClientError) -> ClientError {
        self.reach.failure(e)
    }
}

impl<C> Drop for OpLinks<C>
where
    C: Deref,
    C::Target: ServerLink,
{
    fn drop(&mut self) {
        for c in self.used.values() {
            c.routes().forget_op(self.op);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[derive(Debug, Default)]
    struct Fake {
        routes: RefCell<Routes<()>>,
    }

    impl ServerLink for Fake {
        type Sink = ();
        fn routes(&self) -> impl DerefMut<Target = Routes<()>> + '_ {
            self.routes.borrow_mut()
        }
    }

    fn fake() -> Rc<Fake> {
        Rc::new(Fake::default())
    }

    #[test]
    fn the_first_live_connection_wins_and_a_dead_one_is_replaced() {
        let one = ServerId([1; 32]);
        let mut table = ConnectionTable::new();
        let (a, loser) = table.install(one, fake());
        assert!(loser.is_none());
        let (used, loser) = table.install(one, fake());
        assert!(Rc::ptr_eq(&used, &a), "one connection per server");
        assert!(!Rc::ptr_eq(&loser.expect("the second to close"), &a));
        a.routes().close();
        assert!(table.live(&one).is_none());
        let (b, old) = table.install(one, fake());
        assert!(Rc::ptr_eq(&old.expect("the dead one"), &a));
        assert!(Rc::ptr_eq(&table.live(&one).expect("live"), &b));
        assert_eq!(table.opened(), 3);
        assert_eq!(table.take_all().len(), 1);
    }

    #[test]
    fn an_operation_reuses_its_connections_and_remembers_who_was_unreachable() {
        let server = ServerId([1; 32]);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let c = fake();
        {
            let mut links = OpLinks::new(7);
            assert!(matches!(links.pick(server), Pick::Open));
            links
                .opened(server, Some(addr), Ok(Rc::clone(&c)))
                .expect("opened");
            assert!(matches!(links.pick(server), Pick::Use(_)));
            c.routes().register(7, 0, ()).expect("open");
            c.routes().register(8, 0, ()).expect("open");
        }
        assert_eq!(c.routes().len(), 1, "the ended operation's routes are gone");
        c.routes().close();
        let mut links = OpLinks::new(9);
        links
            .opened(server, Some(addr), Ok(Rc::clone(&c)))
            .expect("opened");
        assert!(
            matches!(links.pick(server), Pick::Open),
            "a broken one is replaced"
        );

        let mut links = OpLinks::<Rc<Fake>>::new(8);
        assert!(links
            .opened(server, Some(addr), Err("refused".into()))
            .is_none());
        assert!(matches!(links.pick(server), Pick::Unreachable));
        let e = links.failure(ClientError::Stalled("test"));
        assert!(
            matches!(e, ClientError::Unreachable(list) if list == vec![(addr, "refused".to_string())])
        );
    }
}
