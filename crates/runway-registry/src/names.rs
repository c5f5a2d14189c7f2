//! Repository names and tags, by the distribution spec's grammar (the same grammar image
//! references use, so the rules live in `runway_model::reference`).

use runway_model::reference;

/// The longest repository name accepted; clients limit `host/name` to 255 characters.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag the spec allows.
pub const MAX_TAG_LEN: usize = reference::MAX_TAG_LEN;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn is_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REPOSITORY_LEN
        && name.split('/').all(reference::is_path_component)
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_tag(tag: &str) -> bool {
    reference::is_tag(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        for ok in [
            "a",
            "app",
            "team/app",
            "a__b/c-d---e.f",
            "docker.io/library/nginx",
            "127.0.0.1-5000/x",
        ] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a_", "-a", "a...b", "a___b", "a:b", "a@b", "a b",
        ] {
            assert!(!is_repository(bad), "{bad}");
        }
        assert!(!is_repository(&"a".repeat(256)));
    }

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "sha256:abc"] {
            assert!(!is_tag(bad), "{bad}");
        }
        assert!(is_tag(&"t".repeat(128)));
        assert!(!is_tag(&"t".repeat(129)));
    }
}
