//! Aliases: short names for directory caps, so commands take `docs:reports/q3.pdf` instead of a
//! 100-character cap.
//!
//! Stored as Tahoe stores them, in `private/aliases` of the node directory, one `name: cap` per
//! line (blank lines and `#` comments are ignored), so a Tahoe aliases file can be copied over.
//! The file holds write caps, so it lives under `private/`, is created readable by its owner
//! only, and is replaced atomically (temp file, fsync, rename) so a crash leaves the old or the
//! new list, never half of one.
//!
//! A path argument is `ALIAS:a/b/c`, a bare cap `URI:DIR2:...` optionally followed by `/a/b`,
//! or a path with no alias, which uses Tahoe's default alias `tahoe`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lafs_core::cap::Cap;

use crate::node::NodeDir;

/// The alias paths without an alias use, as in Tahoe.
pub const DEFAULT_ALIAS: &str = "tahoe";

/// Why an alias could not be stored, read or resolved. Messages never quote caps (they are
/// secrets and errors get logged).
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}; fix or remove that line")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("alias name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("alias {0:?} already exists; choose another name")]
    Duplicate(String),
    #[error("an alias must name a directory, but this is a {0} cap")]
    NotADirectory(&'static str),
    #[error(
        "an alias cannot name a directory verify cap ({0}): it cannot list or change the directory"
    )]
    VerifyCap(&'static str),
    #[error("not a valid cap: {0}")]
    BadCap(String),
    #[error("no alias {name:?}; known aliases: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownAlias { name: String, known: Vec<String> },
    #[error(
        "{path:?} names no alias and there is no default alias \"{DEFAULT_ALIAS}\"; \
         use ALIAS:path or create the \"{DEFAULT_ALIAS}\" alias"
    )]
    NoDefaultAlias { path: String },
    #[error("path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("a {kind} cap is not a directory, so it has no child {child:?}")]
    PathUnderFile { kind: &'static str, child: String },
}

/// Where a path argument points: a cap and the child names to follow from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A directory cap, or any cap when `path` is empty (`lafs ls URI:CHK:...`).
    pub cap: Cap,
    /// Child names, outermost first; empty for the cap itself.
    pub path: Vec<String>,
}

/// The aliases of one node directory.
#[derive(Clone, Debug)]
pub struct Aliases {
    path: PathBuf,
    entries: BTreeMap<String, Cap>,
}

/// `private/aliases` in a node directory.
pub fn aliases_path(node_dir: &Path) -> PathBuf {
    node_dir.join("private").join("aliases")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AliasError + '_ {
    move |source| AliasError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a name can be written as `name: cap` and read back, and is not mistaken for a cap.
pub fn check_name(name: &str) -> Result<(), AliasError> {
    let bad = |reason| {
        Err(AliasError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.contains(':') {
        return bad("it contains ':', which separates an alias from its path");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("it contains whitespace");
    }
    if name.contains('/') {
        return bad("it contains '/', which separates path components");
    }
    if name.starts_with('#') {
        return bad("it starts with '#', which marks a comment in the aliases file");
    }
    if name == "URI" {
        return bad("URI: starts a cap, so an alias cannot be called URI");
    }
    Ok(())
}

/// Checks a cap can be an alias: a directory that can at least be listed.
fn check_alias_cap(cap: &Cap) -> Result<(), AliasError> {
    if !cap.is_directory() {
        return Err(AliasError::NotADirectory(cap.kind_name()));
    }
    if cap.is_verify_cap() {
        return Err(AliasError::VerifyCap(cap.kind_name()));
    }
    Ok(())
}

impl Aliases {
    /// The aliases of the node at `node_dir`; a node without an aliases file has none.
    pub fn load(node_dir: &Path) -> Result<Aliases, AliasError> {
        let path = aliases_path(node_dir);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Self::parse(path, &text)
    }

    /// The aliases of an opened node.
    pub fn for_node(node: &NodeDir) -> Result<Aliases, AliasError> {
        Self::load(&node.dir)
    }

    /// Parse aliases-file text read from `path` (named in errors, and where saves go).
    pub fn parse(path: PathBuf, text: &str) -> Result<Aliases, AliasError> {
        let mut entries = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| AliasError::BadLine {
                path: path.clone(),
                line: index + 1,
                message,
            };
            let (name, cap_text) = line
                .split_once(':')
                .ok_or_else(|| bad("expected `name: cap`".into()))?;
            let name = name.trim();
            check_name(name).map_err(|e| bad(e.to_string()))?;
            let cap = Cap::parse(cap_text.trim()).map_err(|e| bad(e.to_string()))?;
            check_alias_cap(&cap).map_err(|e| bad(e.to_string()))?;
            if entries.insert(name.to_string(), cap).is_some() {
                return Err(bad(format!("alias {name:?} is defined twice")));
            }
        }
        Ok(Aliases { path, entries })
    }

    /// The file these aliases are saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Add an alias for a directory cap and save the file. Refuses an existing name, a
    /// non-directory cap and a directory verify cap.
    pub fn add(&mut self, name: &str, dircap: &Cap) -> Result<(), AliasError> {
        check_name(name)?;
        check_alias_cap(dircap)?;
        if self.entries.contains_key(name) {
            return Err(AliasError::Duplicate(name.to_string()));
        }
        self.entries.insert(name.to_string(), dircap.clone());
        if let Err(e) = self.save() {
            self.entries.remove(name);
            return Err(e);
        }
        Ok(())
    }

    /// Remove an alias and save the file; returns its cap. (The directory itself is untouched.)
    pub fn remove(&mut self, name: &str) -> Result<Cap, AliasError> {
        let cap = self
            .entries
            .remove(name)
            .ok_or_else(|| self.unknown(name))?;
        if let Err(e) = self.save() {
            self.entries.insert(name.to_string(), cap);
            return Err(e);
        }
        Ok(cap)
    }

    /// All aliases, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, &Cap)> {
        self.entries.iter().map(|(name, cap)| (name.as_str(), cap))
    }

    /// The cap of an alias.
    pub fn get(&self, name: &str) -> Option<&Cap> {
        self.entries.get(name)
    }

    fn unknown(&self, name: &str) -> AliasError {
        AliasError::UnknownAlias {
            name: name.to_string(),
            known: self.entries.keys().cloned().collect(),
        }
    }

    /// Where a path argument points: `ALIAS:a/b`, `URI:...` or `URI:.../a/b`, or a bare path
    /// under the default alias `tahoe`. Empty components (`a//b`, a trailing `/`) are ignored;
    /// `.` and `..` are refused because directory children have no such meaning.
    pub fn resolve(&self, arg: &str) -> Result<Target, AliasError> {
        let target = if arg.starts_with("URI:") {
            let (cap_text, rest) = arg.split_once('/').unwrap_or((arg, ""));
            let cap = Cap::parse(cap_text).map_err(|e| AliasError::BadCap(e.to_string()))?;
            Target {
                cap,
                path: split_path(arg, rest)?,
            }
        } else {
            match arg.split_once(':') {
                // A ':' after a '/' belongs to a child name, not to an alias.
                Some((name, rest)) if !name.contains('/') => {
                    let cap = self.get(name).ok_or_else(|| self.unknown(name))?.clone();
                    Target {
                        cap,
                        path: split_path(arg, rest)?,
                    }
                }
                _ => {
                    let cap = self
                        .get(DEFAULT_ALIAS)
                        .ok_or_else(|| AliasError::NoDefaultAlias {
                            path: arg.to_string(),
                        })?
                        .clone();
                    Target {
                        cap,
                        path: split_path(arg, arg)?,
                    }
                }
            }
        };
        if let Some(child) = target.path.first() {
            if !target.cap.is_directory() {
                return Err(AliasError::PathUnderFile {
                    kind: target.cap.kind_name(),
                    child: child.clone(),
                });
            }
        }
        Ok(target)
    }

    /// Aliases-file text: `name: cap` lines sorted by name.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(name, cap)| format!("{name}: {cap}\n"))
            .collect()
    }

    /// Replace the file atomically: write a temp file beside it, fsync, rename, fsync the
    /// directory. The file is created owner-only because it holds write caps.
    fn save(&self) -> Result<(), AliasError> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
            file.write_all(self.to_text().as_bytes())
                .map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(d) = fs::File::open(dir) {
            d.sync_all().map_err(io_err(dir))?;
        }
        Ok(())
    }
}

/// Child names of `rest` (the part of `arg` after the alias or cap).
fn split_path(arg: &str, rest: &str) -> Result<Vec<String>, AliasError> {
    rest.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| match c {
            "." | ".." => Err(AliasError::BadPath {
                path: arg.to_string(),
                reason: "'.' and '..' are not directory children; write the full path",
            }),
            c => Ok(c.to_string()),
        })
        .collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn dircap(byte: u8) -> Cap {
        Cap::directory(Cap::SskWrite {
            writekey: [byte; 16],
            fingerprint: [byte; 32],
        })
        .unwrap()
    }

    fn readonly_dircap(byte: u8) -> Cap {
        dircap(byte).read_only().unwrap()
    }

    #[test]
    fn added_aliases_survive_a_reload_in_tahoe_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        assert_eq!(aliases.list().count(), 0);
        aliases.add("work", &dircap(1)).unwrap();
        aliases.add("tahoe", &readonly_dircap(2)).unwrap();

        let text = fs::read_to_string(aliases_path(dir.path())).unwrap();
        assert_eq!(
            text,
            format!("tahoe: {}\nwork: {}\n", readonly_dircap(2), dircap(1))
        );
        let reloaded = Aliases::load(dir.path()).unwrap();
        assert_eq!(reloaded.get("work"), Some(&dircap(1)));
        let names: Vec<&str> = reloaded.list().map(|(n, _)| n).collect();
        assert_eq!(names, ["tahoe", "work"]);
        assert!(!aliases_path(dir.path()).with_extension("tmp").exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_aliases_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        aliases.add("work", &dircap(1)).unwrap();
        let mode = fs::metadata(aliases.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "aliases file mode {mode:o}");
    }

    #[test]
    fn a_tahoe_written_file_with_comments_and_spacing_loads() {
        let text = format!(
            "# my aliases\n\ntahoe:{}\n  docs :  {}  \n",
            dircap(1),
            readonly_dircap(2)
        );
        let aliases = Aliases::parse(PathBuf::from("aliases"), &text).unwrap();
        assert_eq!(aliases.get("tahoe"), Some(&dircap(1)));
        assert_eq!(aliases.get("docs"), Some(&readonly_dircap(2)));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let text = format!("a: {}\nnot an alias line\n", dircap(1));
        let err = Aliases::parse(PathBuf::from("aliases"), &text).unwrap_err();
        assert!(matches!(err, AliasError::BadLine { line: 2, .. }), "{err}");
        let text = format!("a: {}\na: {}\n", dircap(1), dircap(2));
        let err = Aliases::parse(PathBuf::from("aliases"), &text).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
        let err = Aliases::parse(PathBuf::from("aliases"), "a: URI:LIT:\n").unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn add_refuses_duplicates_bad_names_and_non_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        aliases.add("work", &dircap(1)).unwrap();
        assert!(matches!(
            aliases.add("work", &dircap(2)),
            Err(AliasError::Duplicate(_))
        ));
        assert_eq!(aliases.get("work"), Some(&dircap(1)));
        for name in ["", "a:b", "a b", "tab\tname", "a/b", "URI", "#x"] {
            assert!(
                matches!(
                    aliases.add(name, &dircap(3)),
                    Err(AliasError::InvalidName { .. })
                ),
                "{name:?} accepted"
            );
        }
        let file = Cap::SskWrite {
            writekey: [4; 16],
            fingerprint: [4; 32],
        };
        assert!(matches!(
            aliases.add("file", &file),
            Err(AliasError::NotADirectory("SSK"))
        ));
        let verify = dircap(5).verify_cap().unwrap();
        assert!(matches!(
            aliases.add("v", &verify),
            Err(AliasError::VerifyCap(_))
        ));
        assert_eq!(Aliases::load(dir.path()).unwrap().list().count(), 1);
    }

    #[test]
    fn remove_forgets_an_alias() {
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        aliases.add("work", &dircap(1)).unwrap();
        assert_eq!(aliases.remove("work").unwrap(), dircap(1));
        assert!(matches!(
            aliases.remove("work"),
            Err(AliasError::UnknownAlias { .. })
        ));
        assert_eq!(Aliases::load(dir.path()).unwrap().get("work"), None);
    }

    #[test]
    fn paths_resolve_through_aliases_caps_and_the_default_alias() {
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        aliases.add("work", &dircap(1)).unwrap();

        let t = aliases.resolve("work:a/b/c").unwrap();
        assert_eq!(t.cap, dircap(1));
        assert_eq!(t.path, ["a", "b", "c"]);
        assert!(aliases.resolve("work:").unwrap().path.is_empty());
        assert_eq!(aliases.resolve("work:/a//b/").unwrap().path, ["a", "b"]);
        // A ':' inside a child name is part of the name.
        assert_eq!(aliases.resolve("work:a/x:y").unwrap().path, ["a", "x:y"]);

        let cap = dircap(2);
        let t = aliases.resolve(&format!("{cap}/docs/q3.pdf")).unwrap();
        assert_eq!(t.cap, cap);
        assert_eq!(t.path, ["docs", "q3.pdf"]);
        assert!(aliases.resolve(&cap.to_string()).unwrap().path.is_empty());

        assert!(matches!(
            aliases.resolve("a/b"),
            Err(AliasError::NoDefaultAlias { .. })
        ));
        aliases.add(DEFAULT_ALIAS, &dircap(3)).unwrap();
        let t = aliases.resolve("a/b").unwrap();
        assert_eq!((t.cap, t.path), (dircap(3), vec!["a".into(), "b".into()]));
        assert_eq!(aliases.resolve("tahoe:a").unwrap().cap, dircap(3));
    }

    #[test]
    fn bad_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut aliases = Aliases::load(dir.path()).unwrap();
        aliases.add("work", &dircap(1)).unwrap();
        let err = aliases.resolve("nope:a").unwrap_err();
        assert_eq!(err.to_string(), "no alias \"nope\"; known aliases: work");
        assert!(matches!(
            aliases.resolve("work:a/../b"),
            Err(AliasError::BadPath { .. })
        ));
        assert!(matches!(
            aliases.resolve("URI:DIR2:garbage/a"),
            Err(AliasError::BadCap(_))
        ));
        let file = Cap::SskWrite {
            writekey: [4; 16],
            fingerprint: [4; 32],
        };
        assert_eq!(aliases.resolve(&file.to_string()).unwrap().cap, file);
        assert!(matches!(
            aliases.resolve(&format!("{file}/child")),
            Err(AliasError::PathUnderFile { kind: "SSK", .. })
        ));
    }
}
