//! Child names and slash-separated paths.
//!
//! Names are compared after Unicode NFC normalization, going in and coming out, as Tahoe does
//! (the same visible name typed on two systems must find the same child). Walking a path needs
//! each intermediate directory to be fetched, which is I/O, so [`Directory::walk`] resolves
//! what it can and tells the caller which directory to fetch next.

use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use super::child::ChildCap;
use super::table::{Child, Directory};
use crate::cap::{Cap, DirCap};

/// Why a path or name is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {path:?} has an empty component (doubled, leading or trailing '/')")]
    EmptyComponent { path: String },
    #[error("path {path:?} has a {component:?} component; paths are resolved without . or ..")]
    DotComponent { path: String, component: String },
    #[error("name {name:?} contains '/', which separates path components")]
    SlashInName { name: String },
    #[error("no child named {name:?}")]
    NoSuchChild { name: String },
    #[error("{name:?} is not a directory, so the path cannot continue below it")]
    NotADirectory { name: String },
}

/// NFC form of `name`, borrowing when it already is (the common case).
pub fn normalize(name: &str) -> Cow<'_, str> {
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => Cow::Borrowed(name),
        _ => Cow::Owned(name.nfc().collect()),
    }
}

/// Splits `a/b/c` into NFC components. The empty path is the directory itself (no components);
/// empty, `.` and `..` components are refused.
pub fn split_path(path: &str) -> Result<Vec<String>, PathError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    path.split('/')
        .map(|c| match c {
            "" => Err(PathError::EmptyComponent {
                path: path.to_string(),
            }),
            "." | ".." => Err(PathError::DotComponent {
                path: path.to_string(),
                component: c.to_string(),
            }),
            c => Ok(normalize(c).into_owned()),
        })
        .collect()
}

/// Where a path walk got to within one directory.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// The path ends at this child.
    Found { name: &'a str, child: &'a Child },
    /// The path continues inside the directory `cap` (the child named `name`): fetch it, then
    /// walk `rest` there.
    Descend {
        name: &'a str,
        cap: &'a DirCap,
        rest: &'a [String],
    },
    /// The path is empty: it names the directory itself.
    Here,
}

impl Directory {
    /// Resolves the first component of `path` (from [`split_path`]) in this directory.
    pub fn walk<'a>(&'a self, path: &'a [String]) -> Result<Step<'a>, PathError> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(Step::Here);
        };
        let (name, slot) = self
            .children
            .get_key_value(&*normalize(first))
            .ok_or_else(|| PathError::NoSuchChild {
                name: first.clone(),
            })?;
        if rest.is_empty() {
            return Ok(Step::Found {
                name,
                child: &slot.child,
            });
        }
        match &slot.child.cap {
            ChildCap::Known(Cap::Directory(cap)) => Ok(Step::Descend { name, cap, rest }),
            _ => Err(PathError::NotADirectory { name: name.clone() }),
        }
    }
}

/// Checks a name for a new link: non-empty, no `/`, not `.` or `..` (such a child could never be
/// reached by a path). Returns its NFC form.
pub fn check_new_name(name: &str) -> Result<String, PathError> {
    if name.contains('/') {
        return Err(PathError::SlashInName {
            name: name.to_string(),
        });
    }
    let mut components = split_path(name)?;
    match components.pop() {
        Some(one) => Ok(one),
        None => Err(PathError::EmptyComponent {
            path: name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_normalizes_and_refuses_dots_and_empties() {
        assert_eq!(split_path("").unwrap(), Vec::<String>::new());
        assert_eq!(split_path("a/e\u{301}/c").unwrap(), ["a", "\u{e9}", "c"]);
        for bad in ["/a", "a/", "a//b", "a/./b", "..", "a/.."] {
            assert!(split_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn walk_finds_children_and_says_where_to_descend() {
        use crate::dirnode::{Access, ChildCap};
        let dir_cap = Cap::parse(
            "URI:DIR2-RO:e3mdrzfwhoq42hy5ubcz6rp3o4:ybyibhnp3vvwuq2vaw2ckjmesgkklfs6ghxleztqidihjyofgw7q",
        )
        .unwrap();
        let mut d = Directory::new(Access::ReadWrite { writekey: [1; 16] });
        d.add("sub", ChildCap::from_cap(dir_cap.clone()), None, false, 1.0)
            .unwrap();
        d.add(
            "f",
            ChildCap::from_cap(Cap::parse("URI:LIT:nbswy3dp").unwrap()),
            None,
            false,
            1.0,
        )
        .unwrap();

        assert_eq!(d.walk(&[]).unwrap(), Step::Here);
        let path = split_path("sub/x/y").unwrap();
        let Step::Descend { name, cap, rest } = d.walk(&path).unwrap() else {
            panic!("expected to descend")
        };
        assert_eq!((name, rest), ("sub", &path[1..]));
        assert_eq!(&Cap::Directory(cap.clone()), &dir_cap);
        let path = split_path("f").unwrap();
        assert!(matches!(
            d.walk(&path).unwrap(),
            Step::Found { name: "f", .. }
        ));
        let path = split_path("f/deeper").unwrap();
        assert_eq!(
            d.walk(&path).unwrap_err(),
            PathError::NotADirectory { name: "f".into() }
        );
        let path = split_path("nope/x").unwrap();
        assert_eq!(
            d.walk(&path).unwrap_err(),
            PathError::NoSuchChild {
                name: "nope".into()
            }
        );
    }

    #[test]
    fn new_names_are_single_components() {
        assert_eq!(check_new_name("x\u{30a}").unwrap(), "x\u{30a}");
        assert_eq!(check_new_name("A\u{30a}").unwrap(), "\u{c5}");
        for bad in ["", "a/b", ".", ".."] {
            assert!(check_new_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_new_name("a/b"),
            Err(PathError::SlashInName { name: "a/b".into() })
        );
    }
}
