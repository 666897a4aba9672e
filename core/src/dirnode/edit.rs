//! Changing a directory: link, unlink, rename, and set metadata, with Tahoe's rules.
//!
//! Every edit checks everything first and then changes the directory, so a refused edit leaves
//! it exactly as it was. Read-only directories refuse all edits; immutable directories (which
//! are being built, since a stored one can never change) accept only deep-immutable children.
//! The time of the change comes from the caller, in seconds since the epoch.

use super::child::ChildCap;
use super::metadata::{update_metadata, wants_no_write, Metadata};
use super::path::{check_new_name, normalize, PathError};
use super::table::{Child, Directory, Slot};
use super::Access;

/// What to do when the new name is already linked (Tahoe's `overwrite` / `replace=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse: the existing link stays.
    No,
    /// Replace whatever is there.
    Yes,
    /// Replace files, but refuse to replace a directory.
    OnlyFiles,
}

impl Overwrite {
    /// Why `name`, now linking `existing`, may not be replaced under this policy (`None`: it
    /// may). The one place the policy is decided, for edits and for callers checking before
    /// they upload.
    pub fn refusal(self, name: &str, existing: &ChildCap) -> Option<EditError> {
        match self {
            Overwrite::No => Some(EditError::ExistingChild { name: name.into() }),
            Overwrite::OnlyFiles if existing.is_directory() => {
                Some(EditError::ExistingDirectory { name: name.into() })
            }
            _ => None,
        }
    }
}

impl From<bool> for Overwrite {
    fn from(yes: bool) -> Self {
        if yes {
            Overwrite::Yes
        } else {
            Overwrite::No
        }
    }
}

/// Why an edit was refused. The directory is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the directory is read-only (opened with a read cap); use its write cap to change it")]
    ReadOnly,
    #[error("bad child name: {0}")]
    Name(#[from] PathError),
    #[error("a child named {name:?} already exists (pass overwrite to replace it)")]
    ExistingChild { name: String },
    #[error("a directory named {name:?} already exists and only files may be replaced")]
    ExistingDirectory { name: String },
    #[error("no child named {name:?}")]
    NoSuchChild { name: String },
    #[error("{name:?} cannot go in an immutable directory: its cap is writeable or mutable")]
    MustBeDeepImmutable { name: String },
}

impl Directory {
    fn check_writeable(&self) -> Result<(), EditError> {
        match self.access {
            Access::ReadOnly => Err(EditError::ReadOnly),
            Access::ReadWrite { .. } | Access::Immutable => Ok(()),
        }
    }

    /// Where `name` may be linked: refused if taken and `overwrite` says so. Returns the
    /// existing link's metadata, which the new link inherits Tahoe's timestamps from.
    fn check_target(
        &self,
        name: &str,
        overwrite: Overwrite,
    ) -> Result<Option<Metadata>, EditError> {
        let Some(existing) = self.children.get(name) else {
            return Ok(None);
        };
        match overwrite.refusal(name, &existing.child.cap) {
            Some(refused) => Err(refused),
            None => Ok(Some(existing.child.metadata.clone())),
        }
    }

    fn check_allowed(&self, name: &str, cap: &ChildCap) -> Result<(), EditError> {
        if self.access.is_deep_immutable() && !cap.is_deep_immutable() {
            return Err(EditError::MustBeDeepImmutable { name: name.into() });
        }
        Ok(())
    }

    /// Stores a changed child; its bytes will be packed afresh.
    fn put(&mut self, name: String, cap: ChildCap, metadata: Metadata) -> &Child {
        // Tahoe's "no-write" metadata links the child read-only.
        let cap = if wants_no_write(&metadata) {
            cap.to_read_only()
        } else {
            cap
        };
        let slot = Slot {
            child: Child { cap, metadata },
            packed: None,
        };
        let stored = match self.children.entry(name) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.insert(slot);
                e.into_mut()
            }
            std::collections::btree_map::Entry::Vacant(e) => e.insert(slot),
        };
        &stored.child
    }

    /// A new directory holding `children` with their metadata exactly as given (Tahoe's
    /// `pack_children`, used when a directory is created with initial children).
    pub fn with_children(
        access: Access,
        children: impl IntoIterator<Item = (String, Child)>,
    ) -> Result<Directory, EditError> {
        let mut dir = Directory::new(access);
        dir.check_writeable()?;
        for (name, child) in children {
            let name = check_new_name(&name)?;
            dir.check_allowed(&name, &child.cap)?;
            if dir.children.contains_key(&name) {
                return Err(EditError::ExistingChild { name });
            }
            let slot = Slot {
                child,
                packed: None,
            };
            dir.children.insert(name, slot);
        }
        Ok(dir)
    }

    /// Links `cap` as `name` (Tahoe's `set_node`). With `metadata` given, it replaces the user
    /// keys of an existing link's metadata; without, they are kept. Either way Tahoe's
    /// `linkcrtime` (kept from an existing link) and `linkmotime` are set from `now`.
    pub fn add(
        &mut self,
        name: &str,
        cap: ChildCap,
        metadata: Option<&Metadata>,
        overwrite: impl Into<Overwrite>,
        now: f64,
    ) -> Result<&Child, EditError> {
        self.check_writeable()?;
        let name = check_new_name(name)?;
        self.check_allowed(&name, &cap)?;
        let old = self.check_target(&name, overwrite.into())?;
        let metadata = update_metadata(old, metadata, now);
        Ok(self.put(name, cap, metadata))
    }

    /// Unlinks `name`, returning what it linked.
    pub fn remove(&mut self, name: &str) -> Result<Child, EditError> {
        self.check_writeable()?;
        let key = normalize(name);
        match self.children.remove(&*key) {
            Some(slot) => Ok(slot.child),
            None => Err(EditError::NoSuchChild { name: key.into() }),
        }
    }

    /// Moves the link `from` to `to` within this directory (Tahoe's `move_child_to` with the
    /// same parent): user metadata moves along, `linkcrtime` restarts at `now` unless an
    /// overwritten link at `to` had one. Renaming to the same name does nothing.
    pub fn rename(
        &mut self,
        from: &str,
        to: &str,
        overwrite: impl Into<Overwrite>,
        now: f64,
    ) -> Result<(), EditError> {
        self.check_writeable()?;
        let from = normalize(from).into_owned();
        let to = check_new_name(to)?;
        let Some(moving) = self.children.get(&from) else {
            return Err(EditError::NoSuchChild { name: from });
        };
        if from == to {
            return Ok(());
        }
        let (cap, user) = (moving.child.cap.clone(), moving.child.metadata.clone());
        let old = self.check_target(&to, overwrite.into())?;
        let metadata = update_metadata(old, Some(&user), now);
        self.children.remove(&from);
        self.put(to, cap, metadata);
        Ok(())
    }

    /// Replaces the user metadata of `name` (Tahoe's `set_metadata_for`); Tahoe's own key is
    /// kept and `linkmotime` set to `now`.
    pub fn set_metadata(
        &mut self,
        name: &str,
        metadata: &Metadata,
        now: f64,
    ) -> Result<&Child, EditError> {
        self.check_writeable()?;
        let key = normalize(name).into_owned();
        let Some(existing) = self.children.get(&key) else {
            return Err(EditError::NoSuchChild { name: key });
        };
        let cap = existing.child.cap.clone();
        let merged = update_metadata(Some(existing.child.metadata.clone()), Some(metadata), now);
        Ok(self.put(key, cap, merged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::Cap;
    use crate::dirnode::json::{JsonObject, JsonValue};
    use crate::dirnode::metadata::{link_created, link_modified};

    const CHK: &str = "URI:CHK:cmtcxq7hwxvfxan34yiev6ivhy:qvcekmjtoetdcw4kmi7b3rtblvgx7544crnwaqtiewemdliqsokq:3:10:5";
    const SSK: &str =
        "URI:SSK:vfvcbdfbszyrsaxchgevhmmlii:euw4iw7bbnkrrwpzuburbhppuxhc3gwxv26f6imekhz7zyw2ojnq";
    const DIR: &str =
        "URI:DIR2:vfvcbdfbszyrsaxchgevhmmlii:euw4iw7bbnkrrwpzuburbhppuxhc3gwxv26f6imekhz7zyw2ojnq";

    fn cap(s: &str) -> ChildCap {
        ChildCap::from_cap(Cap::parse(s).unwrap())
    }

    fn rw() -> Directory {
        Directory::new(Access::ReadWrite { writekey: [9; 16] })
    }

    fn user(json: &str) -> Metadata {
        JsonObject::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn add_sets_link_times_and_respects_overwrite() {
        let mut d = rw();
        d.add("f", cap(CHK), Some(&user(r#"{"k": 1}"#)), false, 100.0)
            .unwrap();
        let err = d.add("f", cap(SSK), None, false, 200.0).unwrap_err();
        assert_eq!(err, EditError::ExistingChild { name: "f".into() });
        assert_eq!(d.get("f").unwrap().cap, cap(CHK));
        let c = d.add("f", cap(SSK), None, true, 200.0).unwrap();
        assert_eq!(link_created(&c.metadata), Some(100.0));
        assert_eq!(link_modified(&c.metadata), Some(200.0));
        assert_eq!(c.metadata.get("k"), Some(&JsonValue::Int(1)));
    }

    #[test]
    fn only_files_refuses_to_replace_a_directory() {
        let mut d = rw();
        d.add("sub", cap(DIR), None, false, 1.0).unwrap();
        d.add("f", cap(CHK), None, false, 1.0).unwrap();
        assert_eq!(
            d.add("sub", cap(CHK), None, Overwrite::OnlyFiles, 2.0),
            Err(EditError::ExistingDirectory { name: "sub".into() })
        );
        d.add("f", cap(SSK), None, Overwrite::OnlyFiles, 2.0)
            .unwrap();
    }

    #[test]
    fn read_only_refuses_every_edit_and_stays_unchanged() {
        let mut d = Directory::new(Access::ReadOnly);
        assert_eq!(
            d.add("f", cap(CHK), None, true, 1.0).unwrap_err(),
            EditError::ReadOnly
        );
        assert_eq!(d.remove("f").unwrap_err(), EditError::ReadOnly);
        assert_eq!(
            d.rename("f", "g", true, 1.0).unwrap_err(),
            EditError::ReadOnly
        );
        assert!(d.is_empty());
    }

    #[test]
    fn immutable_accepts_only_deep_immutable_children() {
        let mut d = Directory::new(Access::Immutable);
        assert_eq!(
            d.add("m", cap(SSK), None, true, 1.0).unwrap_err(),
            EditError::MustBeDeepImmutable { name: "m".into() }
        );
        d.add("i", cap(CHK), None, true, 1.0).unwrap();
        let unknown = ChildCap::from_caps(None, Some(b"x-future:ro"), false).unwrap();
        d.add("u", unknown, None, true, 1.0).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn rename_moves_metadata_and_restarts_creation_time() {
        let mut d = rw();
        d.add("a", cap(CHK), Some(&user(r#"{"k": "v"}"#)), false, 1.0)
            .unwrap();
        d.rename("a", "a", false, 5.0).unwrap();
        assert_eq!(link_modified(&d.get("a").unwrap().metadata), Some(1.0));
        d.rename("a", "b", false, 2.0).unwrap();
        assert!(d.get("a").is_none());
        let b = d.get("b").unwrap();
        assert_eq!(b.cap, cap(CHK));
        assert_eq!(
            b.metadata.to_python_json(),
            r#"{"k": "v", "tahoe": {"linkcrtime": 2.0, "linkmotime": 2.0}}"#
        );
        d.add("c", cap(SSK), None, false, 3.0).unwrap();
        assert_eq!(
            d.rename("b", "c", false, 4.0),
            Err(EditError::ExistingChild { name: "c".into() })
        );
        assert!(d.get("b").is_some());
        assert_eq!(
            d.rename("zz", "y", false, 4.0),
            Err(EditError::NoSuchChild { name: "zz".into() })
        );
    }

    #[test]
    fn remove_and_bad_names() {
        let mut d = rw();
        d.add("\u{c5}", cap(CHK), None, false, 1.0).unwrap();
        // NFC: "A" + combining ring is the same name
        assert_eq!(d.remove("A\u{30a}").unwrap().cap, cap(CHK));
        assert_eq!(
            d.remove("x"),
            Err(EditError::NoSuchChild { name: "x".into() })
        );
        for bad in ["", "a/b", ".", ".."] {
            assert!(matches!(
                d.add(bad, cap(CHK), None, true, 1.0),
                Err(EditError::Name(_))
            ));
        }
    }

    #[test]
    fn no_write_metadata_links_read_only() {
        let mut d = rw();
        let c = d
            .add(
                "w",
                cap(SSK),
                Some(&user(r#"{"no-write": true}"#)),
                false,
                1.0,
            )
            .unwrap();
        assert_eq!(c.cap.write_uri(), None);
        d.add("v", cap(SSK), None, false, 1.0).unwrap();
        let c = d
            .set_metadata("v", &user(r#"{"no-write": 1}"#), 2.0)
            .unwrap();
        assert_eq!(c.cap.write_uri(), None);
    }
}
