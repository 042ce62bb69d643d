//! Invite codes: unique (a database constraint) and unguessable. The server generates them,
//! unless the client proposes a strong one (the existing web client makes a 10-character code
//! and shows its own invite link right after creating the group).

use rand::Rng;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Length of a generated code: 16 symbols of 62 give about 95 bits of entropy.
pub const INVITE_CODE_LEN: usize = 16;
/// Longest string accepted as an invite code in a request; anything longer cannot exist.
pub const MAX_INVITE_CODE_INPUT: usize = 64;

/// Shortest client-proposed code kept: 10 symbols of 62 are about 59 bits, beyond reach of
/// guessing through rate-limited lookups.
pub const MIN_CLIENT_CODE_LEN: usize = 10;

/// The client's proposed code if it is strong enough to keep: `MIN_CLIENT_CODE_LEN` to
/// `MAX_INVITE_CODE_INPUT` ASCII letters and digits. `None` means the server generates one.
pub fn acceptable_client_code(proposed: Option<&str>) -> Option<&str> {
    proposed.filter(|code| {
        (MIN_CLIENT_CODE_LEN..=MAX_INVITE_CODE_INPUT).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Draws a fresh invite code from a cryptographically secure generator.
pub fn generate_invite_code<R: Rng + rand::CryptoRng>(rng: &mut R) -> String {
    (0..INVITE_CODE_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// True when `code` could be an invite code at all (cheap check before touching the database).
pub fn is_plausible_invite_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_INVITE_CODE_INPUT
        && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_alphanumeric_of_fixed_length_and_distinct() {
        let mut rng = rand::rngs::OsRng;
        let codes: HashSet<String> = (0..1000).map(|_| generate_invite_code(&mut rng)).collect();
        assert_eq!(codes.len(), 1000);
        for code in &codes {
            assert_eq!(code.len(), INVITE_CODE_LEN);
            assert!(is_plausible_invite_code(code));
        }
    }

    #[test]
    fn only_strong_client_codes_are_kept() {
        assert_eq!(
            acceptable_client_code(Some("Ab3dE6gH9j")),
            Some("Ab3dE6gH9j")
        );
        assert_eq!(
            acceptable_client_code(Some(&"x".repeat(64))).map(str::len),
            Some(64)
        );
        for weak in [
            "",
            "Ab3dE6gH9",
            "Ab3dE6gH9j!",
            "Ab3dE6 H9jk",
            "한글코드한글코드한글코드",
        ] {
            assert_eq!(acceptable_client_code(Some(weak)), None, "{weak}");
        }
        assert_eq!(acceptable_client_code(Some(&"x".repeat(65))), None);
        assert_eq!(acceptable_client_code(None), None);
    }

    #[test]
    fn implausible_codes_are_rejected() {
        assert!(!is_plausible_invite_code(""));
        assert!(!is_plausible_invite_code("abc def"));
        assert!(!is_plausible_invite_code("../etc"));
        assert!(!is_plausible_invite_code(&"a".repeat(65)));
        assert!(is_plausible_invite_code("legacy10ch"));
    }
}
