//! Child metadata and Tahoe's rules for updating it when a link is made or changed.
//!
//! Metadata is a JSON object kept in insertion order so it re-serializes byte for byte. Tahoe
//! owns the `tahoe` key (`linkcrtime`, `linkmotime`: seconds since the epoch as floats); every
//! other key belongs to the user and is preserved. Times come from the caller: the core has no
//! clock.

use super::json::{JsonObject, JsonValue};

/// A child's metadata: a JSON object in insertion order.
pub type Metadata = JsonObject;

/// The key Tahoe reserves for its own link timestamps.
pub const TAHOE_KEY: &str = "tahoe";

/// Tahoe's `update_metadata`: the metadata a link gets when it is (re)made at time `now`.
///
/// `old` is the existing link's metadata (`None` for a new link). If `new` is given it replaces
/// every user key, but the `tahoe` key always comes from `old`. `linkcrtime` is kept when present,
/// else taken from a pre-1.4 top-level `ctime`, else `now`; `linkmotime` becomes `now`. A `tahoe`
/// value that is not an object (never written by Tahoe) is replaced by a fresh one.
pub fn update_metadata(old: Option<Metadata>, new: Option<&Metadata>, now: f64) -> Metadata {
    let mut metadata = old.unwrap_or_default();
    let old_ctime = metadata
        .get("ctime")
        .filter(|v| **v != JsonValue::Null)
        .cloned();
    if let Some(new) = new {
        let mut replaced = new.clone();
        replaced.remove(TAHOE_KEY);
        if let Some(sys) = metadata.remove(TAHOE_KEY) {
            replaced.insert(TAHOE_KEY, sys);
        }
        metadata = replaced;
    }
    let mut sys = match metadata.get(TAHOE_KEY) {
        Some(JsonValue::Object(o)) => o.clone(),
        _ => JsonObject::new(),
    };
    if !sys.contains_key("linkcrtime") {
        sys.insert("linkcrtime", old_ctime.unwrap_or(JsonValue::Float(now)));
    }
    sys.insert("linkmotime", JsonValue::Float(now));
    metadata.insert(TAHOE_KEY, JsonValue::Object(sys));
    metadata
}

/// Tahoe's link creation time for this metadata, if recorded as a number.
pub fn link_created(metadata: &Metadata) -> Option<f64> {
    tahoe_time(metadata, "linkcrtime")
}

/// Tahoe's last link modification time for this metadata, if recorded as a number.
pub fn link_modified(metadata: &Metadata) -> Option<f64> {
    tahoe_time(metadata, "linkmotime")
}

fn tahoe_time(metadata: &Metadata, key: &str) -> Option<f64> {
    match metadata.get(TAHOE_KEY)? {
        JsonValue::Object(sys) => match sys.get(key)? {
            JsonValue::Float(f) => Some(*f),
            JsonValue::Int(i) => Some(*i as f64),
            _ => None,
        },
        _ => None,
    }
}

/// True when the metadata asks for the child to be linked read-only (`"no-write"` truthy).
pub fn wants_no_write(metadata: &Metadata) -> bool {
    metadata.get("no-write").is_some_and(JsonValue::is_truthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> Metadata {
        JsonObject::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn new_link_gets_both_times() {
        let m = update_metadata(None, None, 10.5);
        assert_eq!(
            m.to_python_json(),
            r#"{"tahoe": {"linkcrtime": 10.5, "linkmotime": 10.5}}"#
        );
    }

    #[test]
    fn relink_keeps_creation_time_and_user_keys() {
        let old = obj(r#"{"x": 1, "tahoe": {"linkcrtime": 1.0, "linkmotime": 2.0}, "y": 2}"#);
        let m = update_metadata(Some(old), None, 3.0);
        assert_eq!(
            m.to_python_json(),
            r#"{"x": 1, "tahoe": {"linkcrtime": 1.0, "linkmotime": 3.0}, "y": 2}"#
        );
    }

    #[test]
    fn new_metadata_replaces_user_keys_but_not_tahoe_key() {
        let old = obj(r#"{"x": 1, "tahoe": {"linkcrtime": 1.0, "linkmotime": 2.0}}"#);
        let new = obj(r#"{"tahoe": {"linkcrtime": 99.0}, "z": true}"#);
        let m = update_metadata(Some(old), Some(&new), 3.0);
        assert_eq!(
            m.to_python_json(),
            r#"{"z": true, "tahoe": {"linkcrtime": 1.0, "linkmotime": 3.0}}"#
        );
    }

    #[test]
    fn legacy_ctime_becomes_link_creation_time() {
        let old = obj(r#"{"ctime": 5, "mtime": 6}"#);
        let m = update_metadata(Some(old), None, 7.0);
        assert_eq!(link_created(&m), Some(5.0));
        assert_eq!(link_modified(&m), Some(7.0));
    }

    #[test]
    fn no_write_uses_python_truthiness() {
        assert!(wants_no_write(&obj(r#"{"no-write": true}"#)));
        assert!(wants_no_write(&obj(r#"{"no-write": "yes"}"#)));
        assert!(!wants_no_write(&obj(r#"{"no-write": 0}"#)));
        assert!(!wants_no_write(&obj(r#"{}"#)));
    }
}
