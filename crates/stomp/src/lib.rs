//! STOMP 1.2 frames over WebSocket messages: a strict, bounded parser and a serializer.
//!
//! One WebSocket message carries zero or more frames; a lone end-of-line is a heart-beat. The
//! parser never allocates beyond the configured limits, so a hostile client gets an error, not
//! unbounded memory, and never a panic.

use thiserror::Error;

pub mod subprotocol;

/// Bounds that keep a frame from costing more than it should.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest whole frame (command + headers + body).
    pub max_frame_bytes: usize,
    pub max_headers: usize,
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_headers: 32,
            max_header_line: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CONNECT" => Self::Connect,
            "STOMP" => Self::Stomp,
            "SEND" => Self::Send,
            "SUBSCRIBE" => Self::Subscribe,
            "UNSUBSCRIBE" => Self::Unsubscribe,
            "ACK" => Self::Ack,
            "NACK" => Self::Nack,
            "BEGIN" => Self::Begin,
            "COMMIT" => Self::Commit,
            "ABORT" => Self::Abort,
            "DISCONNECT" => Self::Disconnect,
            "CONNECTED" => Self::Connected,
            "MESSAGE" => Self::Message,
            "RECEIPT" => Self::Receipt,
            "ERROR" => Self::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Stomp => "STOMP",
            Self::Send => "SEND",
            Self::Subscribe => "SUBSCRIBE",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Ack => "ACK",
            Self::Nack => "NACK",
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Abort => "ABORT",
            Self::Disconnect => "DISCONNECT",
            Self::Connected => "CONNECTED",
            Self::Message => "MESSAGE",
            Self::Receipt => "RECEIPT",
            Self::Error => "ERROR",
        }
    }

    /// CONNECT and CONNECTED headers are not escaped (STOMP 1.2 §"Value Encoding").
    fn escapes_headers(self) -> bool {
        !matches!(self, Self::Connect | Self::Connected)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of a header (STOMP 1.2: repeated headers, the first wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Serializes the frame, with `content-length` for any body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        out.extend_from_slice(self.command.as_str().as_bytes());
        out.push(b'\n');
        let escape = self.command.escapes_headers();
        for (name, value) in &self.headers {
            if name == "content-length" {
                continue;
            }
            push_header_part(&mut out, name, escape);
            out.push(b':');
            push_header_part(&mut out, value, escape);
            out.push(b'\n');
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

fn push_header_part(out: &mut Vec<u8>, s: &str, escape: bool) {
    if !escape {
        // Unescaped commands still cannot carry line breaks or colons in names.
        out.extend(s.bytes().filter(|b| *b != b'\n' && *b != b'\r'));
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b':' => out.extend_from_slice(b"\\c"),
            _ => out.push(b),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    #[error("header line longer than {0} bytes")]
    HeaderTooLong(usize),
    #[error("unknown command")]
    UnknownCommand,
    #[error("malformed header")]
    MalformedHeader,
    #[error("invalid escape sequence in a header")]
    BadEscape,
    #[error("invalid content-length")]
    BadContentLength,
    #[error("frame is not terminated by NUL")]
    Unterminated,
    #[error("frame is not UTF-8 where it must be")]
    NotUtf8,
}

/// What a WebSocket message held.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Heartbeat,
    Frame(Frame),
}

/// Parses every frame (and heart-beat) in one WebSocket message.
pub fn parse_message(data: &[u8], limits: &Limits) -> Result<Vec<Item>, ParseError> {
    if data.len() > limits.max_frame_bytes {
        return Err(ParseError::TooLarge(limits.max_frame_bytes));
    }
    let mut items = Vec::new();
    let mut rest = data;
    loop {
        // End-of-lines between frames are heart-beats.
        let mut saw_eol = false;
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'\n' {
                saw_eol = true;
                rest = tail;
            } else if b == b'\r' && tail.first() == Some(&b'\n') {
                saw_eol = true;
                rest = &tail[1..];
            } else {
                break;
            }
        }
        if saw_eol {
            items.push(Item::Heartbeat);
        }
        if rest.is_empty() {
            return Ok(items);
        }
        let (frame, consumed) = parse_frame(rest, limits)?;
        items.push(Item::Frame(frame));
        rest = &rest[consumed..];
    }
}

fn take_line(data: &[u8], max: usize) -> Result<(&[u8], usize), ParseError> {
    let end = data.iter().take(max + 2).position(|b| *b == b'\n');
    match end {
        Some(i) => {
            let line = if i > 0 && data[i - 1] == b'\r' {
                &data[..i - 1]
            } else {
                &data[..i]
            };
            if line.len() > max {
                return Err(ParseError::HeaderTooLong(max));
            }
            Ok((line, i + 1))
        }
        None if data.len() > max => Err(ParseError::HeaderTooLong(max)),
        None => Err(ParseError::Unterminated),
    }
}

fn unescape(raw: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            _ => return Err(ParseError::BadEscape),
        }
    }
    Ok(out)
}

/// Parses one frame at the start of `data`; returns it and the bytes it used.
fn parse_frame(data: &[u8], limits: &Limits) -> Result<(Frame, usize), ParseError> {
    let mut pos = 0;
    let (line, used) = take_line(data, limits.max_header_line)?;
    pos += used;
    let command = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let command = Command::parse(command).ok_or(ParseError::UnknownCommand)?;
    let mut headers = Vec::new();
    loop {
        let (line, used) = take_line(&data[pos..], limits.max_header_line)?;
        pos += used;
        if line.is_empty() {
            break;
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders(limits.max_headers));
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let (name, value) = line.split_once(':').ok_or(ParseError::MalformedHeader)?;
        if name.is_empty() {
            return Err(ParseError::MalformedHeader);
        }
        let (name, value) = if command.escapes_headers() {
            (unescape(name)?, unescape(value)?)
        } else {
            (name.to_owned(), value.to_owned())
        };
        headers.push((name, value));
    }
    let content_length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| ParseError::BadContentLength)
        })
        .transpose()?;
    let body_start = pos;
    let body_end = match content_length {
        Some(len) => {
            let end = body_start
                .checked_add(len)
                .ok_or(ParseError::BadContentLength)?;
            if end >= data.len() || data[end] != 0 {
                return Err(if end > limits.max_frame_bytes {
                    ParseError::TooLarge(limits.max_frame_bytes)
                } else {
                    ParseError::Unterminated
                });
            }
            end
        }
        None => {
            body_start
                + data[body_start..]
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or(ParseError::Unterminated)?
        }
    };
    let frame = Frame {
        command,
        headers,
        body: data[body_start..body_end].to_vec(),
    };
    Ok((frame, body_end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: &[u8]) -> Result<Frame, ParseError> {
        let items = parse_message(data, &Limits::default())?;
        match items.into_iter().find_map(|i| match i {
            Item::Frame(f) => Some(f),
            Item::Heartbeat => None,
        }) {
            Some(f) => Ok(f),
            None => panic!("no frame"),
        }
    }

    #[test]
    fn parses_a_connect_frame_with_unescaped_headers() {
        let f = one(b"CONNECT\naccept-version:1.2\nheart-beat:10000,10000\nAuthorization:Bearer a.b:c\n\n\0").unwrap();
        assert_eq!(f.command, Command::Connect);
        assert_eq!(f.get("accept-version"), Some("1.2"));
        assert_eq!(f.get("Authorization"), Some("Bearer a.b:c"));
        assert!(f.body.is_empty());
    }

    #[test]
    fn parses_send_with_content_length_body_containing_nul() {
        let f = one(b"SEND\ndestination:/app/add\ncontent-length:5\n\na\0b{}\0").unwrap();
        assert_eq!(f.body, b"a\0b{}");
    }

    #[test]
    fn round_trips_escaped_headers() {
        let f = Frame::new(Command::Message)
            .header("message", "a:b\nc\\d")
            .body("{}");
        let bytes = f.to_bytes();
        assert_eq!(one(&bytes).unwrap().get("message"), Some("a:b\nc\\d"));
        assert!(String::from_utf8_lossy(&bytes).contains("content-length:2"));
    }

    #[test]
    fn heartbeats_and_several_frames_in_one_message() {
        let items = parse_message(
            b"\n\r\nSEND\ndestination:/x\n\nhi\0\nSUBSCRIBE\nid:1\ndestination:/topic/1\n\n\0",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], Item::Heartbeat);
        assert!(matches!(&items[1], Item::Frame(f) if f.body == b"hi"));
        assert_eq!(items[2], Item::Heartbeat);
        assert!(matches!(&items[3], Item::Frame(f) if f.command == Command::Subscribe));
        assert_eq!(
            parse_message(b"\n", &Limits::default()).unwrap(),
            vec![Item::Heartbeat]
        );
    }

    #[test]
    fn repeated_headers_keep_the_first() {
        let f = one(b"SEND\ndestination:/a\ndestination:/b\n\n\0").unwrap();
        assert_eq!(f.get("destination"), Some("/a"));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let limits = Limits {
            max_frame_bytes: 128,
            max_headers: 2,
            max_header_line: 48,
        };
        let cases: Vec<(&[u8], ParseError)> = vec![
            (b"FLY\n\n\0", ParseError::UnknownCommand),
            (b"SEND\nnocolon\n\n\0", ParseError::MalformedHeader),
            (b"SEND\n:empty\n\n\0", ParseError::MalformedHeader),
            (b"SEND\nbad:\\x\n\n\0", ParseError::BadEscape),
            (
                b"SEND\ncontent-length:abc\n\n\0",
                ParseError::BadContentLength,
            ),
            (
                b"SEND\ncontent-length:99999999999999999999999\n\n\0",
                ParseError::BadContentLength,
            ),
            (
                b"SEND\ncontent-length:10\n\nshort\0",
                ParseError::Unterminated,
            ),
            (b"SEND\ncontent-length:2\n\nabc\0", ParseError::Unterminated),
            (b"SEND\na:1\nb:2\nc:3\n\n\0", ParseError::TooManyHeaders(2)),
            (
                b"SEND\nx:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n\0",
                ParseError::HeaderTooLong(48),
            ),
            (
                b"SEND\ndestination:/a\n\nno terminator",
                ParseError::Unterminated,
            ),
            (b"SEND\ndestination:/a", ParseError::Unterminated),
            (b"\xff\xfe\n\n\0", ParseError::NotUtf8),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_message(input, &limits).err(),
                Some(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse_message(&[b'a'; 200], &limits).err(),
            Some(ParseError::TooLarge(128))
        );
        let huge_length = b"SEND\ncontent-length:100000\n\n\0";
        assert!(parse_message(huge_length, &limits).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and every single-byte mutation of a valid frame.
        let valid =
            b"SEND\ndestination:/app/join\ncontent-length:13\n\n{\"roomId\":1}\n\0".to_vec();
        for end in 0..=valid.len() {
            let _ = parse_message(&valid[..end], &Limits::default());
        }
        for i in 0..valid.len() {
            for b in [0u8, b'\n', b':', b'\\', 0xff, b'9'] {
                let mut v = valid.clone();
                v[i] = b;
                let _ = parse_message(&v, &Limits::default());
            }
        }
    }
}
