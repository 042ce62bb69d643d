//! Input validation with the messages clients see. Lengths count characters, not bytes, so a
//! Korean name of 50 syllables is as valid as a Latin one.

use thiserror::Error;

pub const GROUP_NAME_MAX: usize = 50;
pub const GROUP_PASSWORD_MIN: usize = 4;
pub const GROUP_PASSWORD_MAX: usize = 64;
pub const COLOR_MAX: usize = 32;
pub const TODO_CONTENT_MAX: usize = 255;
pub const MEMBER_NAME_MAX: usize = 30;
pub const FCM_TOKEN_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("그룹 이름은 1자 이상 {GROUP_NAME_MAX}자 이하로 입력해 주세요.")]
    GroupName,
    #[error("비밀 그룹의 비밀번호는 {GROUP_PASSWORD_MIN}자 이상 {GROUP_PASSWORD_MAX}자 이하로 입력해 주세요.")]
    GroupPassword,
    #[error("색상은 영문, 숫자, '-', '#'로 된 {COLOR_MAX}자 이하의 값이어야 해요.")]
    Color,
    #[error("할 일은 1자 이상 {TODO_CONTENT_MAX}자 이하로 입력해 주세요.")]
    TodoContent,
    #[error("이름은 1자 이상 {MEMBER_NAME_MAX}자 이하로 입력해 주세요.")]
    MemberName,
    #[error("FCM 토큰은 1자 이상 {FCM_TOKEN_MAX}자 이하로 입력해 주세요.")]
    FcmToken,
}

fn char_len_within(s: &str, max: usize) -> bool {
    s.chars().take(max + 1).count() <= max
}

/// A group name: non-blank, at most [`GROUP_NAME_MAX`] characters as sent (the OpenAPI
/// `maxLength`), no control characters. Returns the trimmed name.
pub fn group_name(raw: &str) -> Result<String, ValidationError> {
    let name = raw.trim();
    if name.is_empty()
        || !char_len_within(raw, GROUP_NAME_MAX)
        || name.chars().any(char::is_control)
    {
        return Err(ValidationError::GroupName);
    }
    Ok(name.to_owned())
}

/// The password of a secret group. A secret group must have one; a public group ignores it.
pub fn group_password(secret: bool, raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    if !secret {
        return Ok(None);
    }
    match raw {
        Some(p)
            if p.chars().count() >= GROUP_PASSWORD_MIN
                && char_len_within(p, GROUP_PASSWORD_MAX) =>
        {
            Ok(Some(p.to_owned()))
        }
        _ => Err(ValidationError::GroupPassword),
    }
}

/// A member's colour for a group (the client uses daisyUI names such as `accent`, or hex codes):
/// 1–32 of `[A-Za-z0-9#-]`, exactly as sent.
pub fn color(raw: &str) -> Result<String, ValidationError> {
    let c = raw;
    let ok = !c.is_empty()
        && c.len() <= COLOR_MAX
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'#');
    if ok {
        Ok(c.to_owned())
    } else {
        Err(ValidationError::Color)
    }
}

/// The text of a todo: non-blank, at most [`TODO_CONTENT_MAX`] characters (kept as typed).
pub fn todo_content(raw: &str) -> Result<String, ValidationError> {
    if raw.trim().is_empty() || !char_len_within(raw, TODO_CONTENT_MAX) {
        return Err(ValidationError::TodoContent);
    }
    Ok(raw.to_owned())
}

/// A member's display name (dev login, or a provider nickname that we store).
pub fn member_name(raw: &str) -> Result<String, ValidationError> {
    let name = raw.trim();
    if name.is_empty()
        || !char_len_within(raw, MEMBER_NAME_MAX)
        || name.chars().any(char::is_control)
    {
        return Err(ValidationError::MemberName);
    }
    Ok(name.to_owned())
}

/// A web-push device token.
pub fn fcm_token(raw: &str) -> Result<String, ValidationError> {
    let t = raw.trim();
    if t.is_empty() || !char_len_within(raw, FCM_TOKEN_MAX) {
        return Err(ValidationError::FcmToken);
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(group_name("  알고리즘 스터디 ").unwrap(), "알고리즘 스터디");
        assert_eq!(group_name(""), Err(ValidationError::GroupName));
        assert_eq!(group_name("   "), Err(ValidationError::GroupName));
        assert!(group_name(&"가".repeat(50)).is_ok());
        assert_eq!(
            group_name(&"가".repeat(51)),
            Err(ValidationError::GroupName)
        );
        assert_eq!(group_name("a\u{0}b"), Err(ValidationError::GroupName));
    }

    #[test]
    fn secret_groups_need_a_password_of_bounded_length() {
        assert_eq!(group_password(false, Some("whatever")).unwrap(), None);
        assert_eq!(
            group_password(true, None),
            Err(ValidationError::GroupPassword)
        );
        assert_eq!(
            group_password(true, Some("abc")),
            Err(ValidationError::GroupPassword)
        );
        assert_eq!(
            group_password(true, Some("abcd")).unwrap(),
            Some("abcd".into())
        );
        assert_eq!(
            group_password(true, Some(&"x".repeat(65))),
            Err(ValidationError::GroupPassword)
        );
    }

    #[test]
    fn colors_todos_names_and_tokens() {
        assert_eq!(color("accent").unwrap(), "accent");
        assert_eq!(color(" accent "), Err(ValidationError::Color));
        assert_eq!(color("#ff00aa").unwrap(), "#ff00aa");
        assert_eq!(color("<script>"), Err(ValidationError::Color));
        assert_eq!(color(""), Err(ValidationError::Color));
        assert!(todo_content("책 30쪽 읽기").is_ok());
        assert_eq!(todo_content(" "), Err(ValidationError::TodoContent));
        assert!(todo_content(&"가".repeat(255)).is_ok());
        assert_eq!(
            todo_content(&"가".repeat(256)),
            Err(ValidationError::TodoContent)
        );
        assert_eq!(member_name("민지").unwrap(), "민지");
        assert_eq!(
            member_name(&"a".repeat(31)),
            Err(ValidationError::MemberName)
        );
        assert!(fcm_token(&"t".repeat(1000)).is_ok());
        assert_eq!(fcm_token(&"t".repeat(1001)), Err(ValidationError::FcmToken));
    }
}
