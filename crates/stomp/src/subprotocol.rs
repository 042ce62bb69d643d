//! STOMP over WebSocket subprotocol negotiation (`Sec-WebSocket-Protocol: v10.stomp, v11.stomp,
//! v12.stomp`, as `@stomp/stompjs` offers them). A browser aborts a handshake whose answer names
//! none of the protocols it offered, so the server must pick one whenever anything is offered.

/// The subprotocols this server speaks, best first (STOMP 1.0 is not spoken).
pub const SUPPORTED: [&str; 2] = ["v12.stomp", "v11.stomp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// The client offered no subprotocol: accept, and name none in the answer.
    NoneOffered,
    /// Answer with this one: the highest offered that the server speaks.
    Chosen(&'static str),
    /// Only protocols the server does not speak were offered: refuse the handshake.
    Refused,
}

/// Negotiates from the values of every `Sec-WebSocket-Protocol` header (each a comma-separated
/// list). Tokens are compared exactly, as RFC 6455 defines them.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Negotiation {
    let offered: Vec<&str> = header_values
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .collect();
    if offered.is_empty() {
        return Negotiation::NoneOffered;
    }
    SUPPORTED
        .iter()
        .find(|supported| offered.contains(supported))
        .map_or(Negotiation::Refused, |chosen| Negotiation::Chosen(chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_supported_offer_wins_whatever_the_order() {
        assert_eq!(
            negotiate(["v10.stomp, v11.stomp, v12.stomp"]),
            Negotiation::Chosen("v12.stomp")
        );
        assert_eq!(
            negotiate(["v12.stomp", "v10.stomp,v11.stomp"]),
            Negotiation::Chosen("v12.stomp")
        );
        assert_eq!(
            negotiate(["mqtt, v11.stomp"]),
            Negotiation::Chosen("v11.stomp")
        );
    }

    #[test]
    fn nothing_offered_is_accepted_without_a_protocol() {
        assert_eq!(negotiate([]), Negotiation::NoneOffered);
        assert_eq!(negotiate([" , "]), Negotiation::NoneOffered);
    }

    #[test]
    fn only_unknown_or_unspoken_offers_are_refused() {
        assert_eq!(negotiate(["mqtt"]), Negotiation::Refused);
        assert_eq!(negotiate(["v10.stomp"]), Negotiation::Refused);
        assert_eq!(negotiate(["V12.STOMP"]), Negotiation::Refused);
    }
}
