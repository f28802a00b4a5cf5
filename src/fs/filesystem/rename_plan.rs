//! Where each object under a renamed directory goes: a pure function of the keys listed under
//! it, the volume's name codec and the bodies of its long names' side objects, so that it can
//! be tested without a store.

use std::collections::{BTreeMap, HashMap};

use crate::object_keys::{self as names, Listed, NameCodec};

/// How a directory rename moves objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct MovePlan {
    /// (from, to) keys.
    pub(super) moves: Vec<(String, String)>,
    /// Long-name side objects to write before anything moves: (key, body).
    pub(super) side_objects: Vec<(String, String)>,
    /// Side objects of the old names, deleted with the rest.
    pub(super) old_side_objects: Vec<String>,
    /// Keys whose names do not decrypt: not ours to move, they stay (the caller logs them).
    pub(super) left_behind: Vec<String>,
}

/// The keys among `keys` that may be long names' side objects: their bodies must be read
/// before planning (only on name-encrypted volumes).
pub(super) fn side_object_keys<'k>(codec: &NameCodec, keys: &'k [String]) -> Vec<&'k String> {
    if !codec.encrypts() {
        return Vec::new();
    }
    keys.iter()
        .filter(|k| k.ends_with(names::SIDE_OBJECT_SUFFIX))
        .collect()
}

/// Plans the move of `keys` (everything under `old_prefix`) to `new_prefix`. Plain names keep
/// their suffix. Encrypted names are bound to their parent's path, so every component below
/// is decrypted under `old_path` and encrypted under `new_path`, and long names get new side
/// objects; `side_bodies` holds the bodies of the old side objects by key.
pub(super) fn plan_moves(
    codec: &NameCodec,
    old_prefix: &str,
    new_prefix: &str,
    old_path: &str,
    new_path: &str,
    keys: &[String],
    side_bodies: &HashMap<String, Vec<u8>>,
) -> MovePlan {
    let mut plan = MovePlan::default();
    if !codec.encrypts() {
        plan.moves = keys
            .iter()
            .map(|k| (k.clone(), format!("{new_prefix}{}", &k[old_prefix.len()..])))
            .collect();
        return plan;
    }
    let mut sides = BTreeMap::new();
    'keys: for key in keys {
        let parts: Vec<&str> = key[old_prefix.len()..].split('/').collect();
        // Plaintext paths and key prefixes of the component's directory, old and new.
        let (mut old_dir, mut new_dir) = (old_path.to_string(), new_path.to_string());
        let (mut old_keys, mut new_keys) = (old_prefix.to_string(), new_prefix.to_string());
        for (i, component) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if component.is_empty() && last {
                // a directory marker
                plan.moves.push((key.clone(), new_keys));
                continue 'keys;
            }
            let name = match codec.classify(&old_dir, component, false) {
                Listed::Name(name) => name,
                Listed::SideObject if last => {
                    plan.old_side_objects.push(key.clone());
                    continue 'keys;
                }
                Listed::LongName => {
                    let side = names::side_object_key(&old_keys, component);
                    let name = side_bodies
                        .get(&side)
                        .and_then(|body| codec.decode_long(&old_dir, component, body));
                    match name {
                        Some(name) => name,
                        None => {
                            plan.left_behind.push(key.clone());
                            continue 'keys;
                        }
                    }
                }
                _ => {
                    plan.left_behind.push(key.clone());
                    continue 'keys;
                }
            };
            let encoded = codec.encode(&new_dir, &name);
            if let Some(body) = encoded.side_body {
                sides.insert(names::side_object_key(&new_keys, &encoded.component), body);
            }
            if last {
                plan.moves
                    .push((key.clone(), format!("{new_keys}{}", encoded.component)));
            } else {
                old_dir = names::join_path(&old_dir, &name);
                new_dir = names::join_path(&new_dir, &name);
                old_keys = format!("{old_keys}{component}/");
                new_keys = format!("{new_keys}{}/", encoded.component);
            }
        }
    }
    plan.side_objects = sides.into_iter().collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn encrypted() -> NameCodec {
        NameCodec::new(true, &MasterKey::from_bytes([9; 32]))
    }

    /// The keys (and side objects) of the plaintext `paths` under `prefix`, whose plaintext
    /// path is `dir_path`; a path ending in '/' is a directory marker.
    fn keys_of(
        codec: &NameCodec,
        prefix: &str,
        dir_path: &str,
        paths: &[&str],
    ) -> (Vec<String>, HashMap<String, Vec<u8>>) {
        let mut keys = Vec::new();
        let mut sides = HashMap::new();
        for path in paths {
            let (mut key, mut dir) = (prefix.to_string(), dir_path.to_string());
            let parts: Vec<&str> = path.split('/').collect();
            for (i, name) in parts.iter().enumerate() {
                if name.is_empty() {
                    break;
                }
                let encoded = codec.encode(&dir, name);
                if let Some(body) = encoded.side_body {
                    let side = names::side_object_key(&key, &encoded.component);
                    keys.push(side.clone());
                    sides.insert(side, body.into_bytes());
                }
                key.push_str(&encoded.component);
                if i + 1 < parts.len() {
                    key.push('/');
                }
                dir = names::join_path(&dir, name);
            }
            keys.push(key);
        }
        keys.sort();
        keys.dedup();
        (keys, sides)
    }

    #[test]
    fn plain_names_keep_their_suffix() {
        let keys = vec!["a/".to_string(), "a/x".to_string(), "a/sub/y".to_string()];
        let plan = plan_moves(
            &NameCodec::Plain,
            "a/",
            "b/c/",
            "a",
            "b/c",
            &keys,
            &HashMap::new(),
        );
        assert_eq!(
            plan.moves,
            vec![
                ("a/".to_string(), "b/c/".to_string()),
                ("a/x".to_string(), "b/c/x".to_string()),
                ("a/sub/y".to_string(), "b/c/sub/y".to_string()),
            ]
        );
        assert!(plan.side_objects.is_empty() && plan.left_behind.is_empty());
    }

    #[test]
    fn encrypted_names_are_encrypted_again_under_the_new_path() {
        let codec = encrypted();
        let long = "n".repeat(240);
        let paths = [
            "",
            "file",
            "sub/",
            "sub/deeper/file2",
            &format!("sub/{long}"),
        ];
        let (old_prefix, _) = keys_of(&codec, "", "", &["old/"]);
        let old_prefix = old_prefix[0].clone();
        let (keys, sides) = keys_of(&codec, &old_prefix, "old", &paths);
        let (new_prefix, _) = keys_of(&codec, "", "", &["new/"]);
        let new_prefix = new_prefix[0].clone();
        let plan = plan_moves(
            &codec,
            &old_prefix,
            &new_prefix,
            "old",
            "new",
            &keys,
            &sides,
        );

        // Exactly the keys the same tree has under its new path, side objects included.
        let (want_keys, want_sides) = keys_of(&codec, &new_prefix, "new", &paths);
        let mut moved: Vec<String> = plan.moves.iter().map(|(_, to)| to.clone()).collect();
        moved.extend(plan.side_objects.iter().map(|(k, _)| k.clone()));
        moved.sort();
        assert_eq!(moved, want_keys);
        for (key, body) in &plan.side_objects {
            assert_eq!(want_sides[key], body.as_bytes(), "side object {key}");
        }
        // The old long name's side object goes with the rest; nothing is left behind.
        assert_eq!(plan.old_side_objects.len(), 1);
        assert!(plan.left_behind.is_empty());
    }

    #[test]
    fn names_that_do_not_decrypt_stay_behind() {
        let codec = encrypted();
        let (prefix, _) = keys_of(&codec, "", "", &["d/"]);
        let prefix = prefix[0].clone();
        let (mut keys, _) = keys_of(&codec, &prefix, "d", &["ok"]);
        let foreign = format!("{prefix}not-an-encrypted-name");
        keys.push(foreign.clone());
        // A long name whose side object is missing cannot be named either.
        let (long_keys, _) = keys_of(&codec, &prefix, "d", &[&"l".repeat(240)]);
        let stand_in = long_keys
            .iter()
            .find(|k| !k.ends_with(names::SIDE_OBJECT_SUFFIX))
            .unwrap()
            .clone();
        keys.push(stand_in.clone());
        let plan = plan_moves(&codec, &prefix, "e/", "d", "e", &keys, &HashMap::new());
        assert_eq!(plan.moves.len(), 1);
        let mut left = plan.left_behind.clone();
        left.sort();
        let mut want = vec![foreign, stand_in];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn only_side_objects_are_read_first() {
        let keys = vec![
            "a/x".to_string(),
            format!("a/y{}", names::SIDE_OBJECT_SUFFIX),
        ];
        assert!(side_object_keys(&NameCodec::Plain, &keys).is_empty());
        assert_eq!(side_object_keys(&encrypted(), &keys), vec![&keys[1]]);
    }
}
