//! Where things live in a checkout (the folders from `xtask_launcher::paths`), and the keys
//! of the caches kept there.

pub use xtask_launcher::paths::{local, root, tools};

/// A key naming what was made from `inputs`, for the caches under [`local`]: the SHA-256 of
/// the inputs, each length-prefixed so that no two different lists hash alike, in hex.
pub fn content_key(inputs: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for input in inputs {
        hash.update((input.len() as u64).to_le_bytes());
        hash.update(input);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::content_key;

    #[test]
    fn a_content_key_tells_input_lists_apart() {
        let one = content_key(&[b"template", b"raw"]);
        assert_eq!(one.len(), 64);
        assert_eq!(one, content_key(&[b"template", b"raw"]));
        assert_ne!(one, content_key(&[b"template", b"transformed"]));
        assert_ne!(content_key(&[b"ab", b"c"]), content_key(&[b"a", b"bc"]));
    }
}
