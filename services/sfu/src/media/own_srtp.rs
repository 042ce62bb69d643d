//! The SFU's own SRTP for forwarded media: a subscriber PeerConnection's outgoing RTP is
//! protected and sent here, outside `rtc`'s write pipeline.
//!
//! Why: `rtc` moves every written packet through eight handlers' queues (≈ 12,900 instructions
//! and ≈ 100 `memcpy`s of its message struct per 1 KB packet); protecting a packet needs only
//! its header written around the payload and one encryption pass. `rtc` does not hand out the
//! DTLS-SRTP keys, but it takes a crypto provider per PeerConnection, and its DTLS exporter
//! (RFC 5705, label `EXTRACTOR-dtls_srtp`) runs the TLS PRF through that provider's HMAC. A
//! [`KeyWitness`] wraps the default provider, keeps the exporter's secret and seed, and the
//! session keys of the SRTP contexts `rtc` builds right after. [`OwnSrtp::derive`] derives the
//! keying material again (RFC 5764 §4.2) for the profile and DTLS role `rtc` negotiated (from
//! its transport stats) and the SRTP session keys from it (RFC 3711 §4.3), and keeps them only if
//! the session key is exactly the one `rtc`'s local context was built with and a probe packet
//! sealed with them is exactly what an `rtc` context makes of it. When either differs (an `rtc`
//! that computes its keys some other way), the PeerConnection keeps `rtc`'s path: nothing is sent
//! with a key nobody checked. Packets are sealed in place in a buffer the PeerConnection keeps
//! (`rtc`'s context looks its SSRC up in a map and returns a new buffer per packet).
//!
//! One encryptor per SSRC: once a PeerConnection sends its media with its own context, every
//! packet on a media SSRC goes through it, resends included (see
//! `interceptors::WireHandle::take_resends`); `rtc`'s context protects only RTCP and RTX, whose
//! SSRCs are its alone. Two contexts protecting the same SSRC could give two packets one
//! keystream (the same counter-mode IV).

use std::sync::{Arc, Mutex, MutexGuard};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SecretVec, SignatureScheme, SigningKey,
    StreamCipher, StreamCipherAlgorithm,
};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// RFC 5764's exporter label.
const EXPORTER_LABEL: &[u8] = b"EXTRACTOR-dtls_srtp";
/// A TLS 1.2 master secret's length: the PRF key of the exporter.
const MASTER_SECRET_LEN: usize = 48;

/// A profile by its name in `rtc`'s transport stats (`srtpCipher`), with its master key and
/// salt lengths (RFC 5764, RFC 7714).
fn profile_named(name: &str) -> Option<(ProtectionProfile, usize, usize)> {
    Some(match name {
        "SRTP_AES128_CM_HMAC_SHA1_80" => (ProtectionProfile::Aes128CmHmacSha1_80, 16, 14),
        "SRTP_AES128_CM_HMAC_SHA1_32" => (ProtectionProfile::Aes128CmHmacSha1_32, 16, 14),
        "SRTP_AEAD_AES_128_GCM" => (ProtectionProfile::AeadAes128Gcm, 16, 12),
        "SRTP_AEAD_AES_256_GCM" => (ProtectionProfile::AeadAes256Gcm, 32, 12),
        _ => return None,
    })
}

/// What one PeerConnection's DTLS handshake showed its crypto provider.
#[derive(Default)]
struct Witnessed {
    /// The exporter's PRF secret and seed (label, client random, server random).
    exporter: Option<(SecretVec, Vec<u8>)>,
    /// The first cipher key (AEAD or AES counter mode) created after the export: `rtc` builds
    /// its local SRTP context first, so this is that context's session key.
    local_key: Option<SecretVec>,
    /// Whether cipher keys are being recorded (from the export on).
    recording: bool,
}

/// A PeerConnection's crypto provider: the default one, watched (see the module docs).
pub(super) struct KeyWitness {
    inner: Arc<dyn RTCCryptoProvider>,
    crypto: WitnessCrypto,
}

struct WitnessCrypto {
    inner: Arc<dyn RTCCryptoProvider>,
    seen: Arc<Mutex<Witnessed>>,
}

/// The keys [`KeyWitness`] saw, for [`OwnSrtp::derive`].
pub(super) struct WitnessedKeys(Arc<Mutex<Witnessed>>);

fn lock(seen: &Mutex<Witnessed>) -> MutexGuard<'_, Witnessed> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

impl KeyWitness {
    pub(super) fn new() -> Result<(Arc<Self>, WitnessedKeys), CryptoError> {
        let inner = rtc::crypto::default_provider()?;
        let seen = Arc::new(Mutex::new(Witnessed::default()));
        let witness = Arc::new(Self {
            inner: inner.clone(),
            crypto: WitnessCrypto {
                inner,
                seen: seen.clone(),
            },
        });
        Ok((witness, WitnessedKeys(seen)))
    }
}

impl RTCCryptoProvider for KeyWitness {
    fn name(&self) -> &'static str {
        "ppodok-key-witness"
    }
    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }
    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

/// An HMAC keyed with something the length of a master secret: its first message tells
/// whether it is the exporter's PRF.
struct WitnessMac {
    inner: Box<dyn Mac>,
    key: SecretVec,
    seen: Arc<Mutex<Witnessed>>,
}

impl Mac for WitnessMac {
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }
    fn sign(&mut self, input: &[&[u8]], output: &mut [u8]) -> Result<(), CryptoError> {
        // The PRF's first HMAC is over the seed alone: A(1) = HMAC(secret, label + randoms).
        if let [seed] = input {
            if seed.starts_with(EXPORTER_LABEL) {
                let mut seen = lock(&self.seen);
                seen.exporter = Some((self.key.clone(), seed.to_vec()));
                seen.local_key = None;
                seen.recording = true;
            }
        }
        self.inner.sign(input, output)
    }
    fn verify(&mut self, input: &[&[u8]], expected: &[u8]) -> Result<(), CryptoError> {
        self.inner.verify(input, expected)
    }
}

impl RTCCrypto for WitnessCrypto {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }
    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }
    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }
    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        let inner = self.inner.crypto().new_hmac(algorithm, key)?;
        // STUN's per-message HMAC-SHA1 and the handshake's other PRF keys pass straight through.
        if algorithm != HmacAlgorithm::Sha256 || key.len() != MASTER_SECRET_LEN {
            return Ok(inner);
        }
        Ok(Box::new(WitnessMac {
            inner,
            key: SecretVec::new(key.to_vec()),
            seen: self.seen.clone(),
        }))
    }
    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.session_key(key);
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }
    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.session_key(key);
        self.inner.crypto().new_aead(algorithm, key)
    }
    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }
    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }
    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }
    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }
    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

impl WitnessCrypto {
    /// A cipher keyed after the export: the first is `rtc`'s local SRTP context's.
    fn session_key(&self, key: &[u8]) {
        let mut seen = lock(&self.seen);
        if seen.recording && seen.local_key.is_none() {
            seen.local_key = Some(SecretVec::new(key.to_vec()));
        }
    }
}

/// TLS 1.2's P_SHA256(secret, seed), `len` bytes (RFC 5246 §5).
fn p_sha256(
    crypto: &dyn RTCCrypto,
    secret: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<SecretVec, CryptoError> {
    let mut mac = crypto.new_hmac(HmacAlgorithm::Sha256, secret)?;
    let block = mac.output_len();
    let mut a = vec![0; block];
    mac.sign(&[seed], &mut a)?;
    let mut out = vec![0; len.div_ceil(block) * block];
    for chunk in out.chunks_mut(block) {
        mac.sign(&[a.as_slice(), seed], chunk)?;
        let previous = std::mem::replace(&mut a, vec![0; block]);
        mac.sign(&[previous.as_slice()], &mut a)?;
    }
    out.truncate(len);
    Ok(SecretVec::new(out))
}

impl WitnessedKeys {
    /// Whether the handshake has exported its SRTP keys. `rtc` builds its contexts in the same
    /// call, under the PeerConnection's lock, so whoever holds that lock sees both or neither.
    pub(super) fn exported(&self) -> bool {
        lock(&self.0).exporter.is_some()
    }

    /// Drops the secrets once they have served (zeroized: `SecretVec`).
    pub(super) fn forget(&self) {
        let mut seen = lock(&self.0);
        seen.exporter = None;
        seen.local_key = None;
        seen.recording = false;
    }
}

/// A subscriber PeerConnection's own SRTP for its outgoing RTP: the session keys of `rtc`'s
/// local context, derived again, and the per-SSRC rollover counters.
pub(super) struct OwnSrtp {
    sealer: Sealer,
    rollovers: Vec<Rollover>,
    /// The datagram being sealed (kept to spare an allocation per packet).
    out: Vec<u8>,
}

/// One direction's RTP session keys (RFC 3711 §4.3) and the ciphers they key.
enum Sealer {
    /// AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714): a 16-byte tag over header and payload.
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; GCM_SALT],
    },
    /// AES_CM_128_HMAC_SHA1_80 and _32 (RFC 3711): the payload in counter mode, then a
    /// truncated HMAC-SHA1 over the packet and its rollover counter.
    Cm {
        cipher: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; CM_SALT],
        tag_len: usize,
    },
}

const GCM_SALT: usize = 12;
const GCM_TAG: usize = 16;
const CM_SALT: usize = 14;
/// HMAC-SHA1's key and output length.
const SHA1_LEN: usize = 20;
/// RFC 3711 §4.3.1's labels for SRTP (SRTCP's stay with `rtc`).
const LABEL_ENCRYPTION: u8 = 0x00;
const LABEL_AUTHENTICATION: u8 = 0x01;
const LABEL_SALT: u8 = 0x02;

/// One SSRC's highest sequence number sent and the rollover counter it went out under.
struct Rollover {
    ssrc: u32,
    highest: u16,
    roc: u32,
}

impl Rollover {
    /// The rollover counter `seq` goes out under (RFC 3711 §3.3.1: the sender knows its index).
    /// Packets go out in order but for resends, which can be from before the last wrap.
    fn roc_for(&mut self, seq: u16) -> u32 {
        if (seq.wrapping_sub(self.highest) as i16) > 0 {
            if seq < self.highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = seq;
            self.roc
        } else if seq > self.highest {
            self.roc.saturating_sub(1)
        } else {
            self.roc
        }
    }
}

/// RFC 3711 §4.3.1–4.3.3's key derivation with the AES-CM PRF (RFC 6188 for AES-256; RFC 7714
/// §11 for GCM's 12-byte salt): `len` bytes for `label`, the key derivation rate being 0.
fn derive_session(
    crypto: &dyn RTCCrypto,
    prf: BlockCipherAlgorithm,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    len: usize,
) -> Option<SecretVec> {
    // x = key_id XOR master_salt, both right-aligned in 112 bits; then x·2^16 with a counter.
    let mut x = [0u8; 16];
    x.get_mut(..master_salt.len())?.copy_from_slice(master_salt);
    x[7] ^= label;
    let mut out = Vec::with_capacity(len.next_multiple_of(16));
    for counter in 0u16.. {
        if out.len() >= len {
            break;
        }
        let mut block = x;
        block[14..].copy_from_slice(&counter.to_be_bytes());
        crypto.block_encrypt(prf, master_key, &mut block).ok()?;
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    Some(SecretVec::new(out))
}

impl Sealer {
    /// The sealer for `profile` under a master key and salt, with its SRTP session key.
    fn new(
        crypto: &dyn RTCCrypto,
        profile: ProtectionProfile,
        key: &[u8],
        salt: &[u8],
    ) -> Option<(Self, SecretVec)> {
        let session = |prf, label, len| derive_session(crypto, prf, key, salt, label, len);
        Some(match profile {
            ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => {
                let (prf, aead) = if matches!(profile, ProtectionProfile::AeadAes128Gcm) {
                    (BlockCipherAlgorithm::Aes128, AeadAlgorithm::Aes128Gcm)
                } else {
                    (BlockCipherAlgorithm::Aes256, AeadAlgorithm::Aes256Gcm)
                };
                let session_key = session(prf, LABEL_ENCRYPTION, key.len())?;
                let session_salt = session(prf, LABEL_SALT, GCM_SALT)?;
                let aead = crypto.new_aead(aead, session_key.as_ref()).ok()?;
                let salt = session_salt.as_ref().try_into().ok()?;
                (Sealer::Gcm { aead, salt }, session_key)
            }
            ProtectionProfile::Aes128CmHmacSha1_80 | ProtectionProfile::Aes128CmHmacSha1_32 => {
                let prf = BlockCipherAlgorithm::Aes128;
                let session_key = session(prf, LABEL_ENCRYPTION, key.len())?;
                let auth_key = session(prf, LABEL_AUTHENTICATION, SHA1_LEN)?;
                let session_salt = session(prf, LABEL_SALT, CM_SALT)?;
                let cipher = crypto
                    .new_stream_cipher(StreamCipherAlgorithm::Aes128Ctr, session_key.as_ref())
                    .ok()?;
                let mac = crypto
                    .new_hmac(HmacAlgorithm::Sha1, auth_key.as_ref())
                    .ok()?;
                let tag_len = if matches!(profile, ProtectionProfile::Aes128CmHmacSha1_80) {
                    10
                } else {
                    4
                };
                let salt = session_salt.as_ref().try_into().ok()?;
                let sealer = Sealer::Cm {
                    cipher,
                    mac,
                    salt,
                    tag_len,
                };
                (sealer, session_key)
            }
            _ => return None,
        })
    }

    fn tag_len(&self) -> usize {
        match self {
            Sealer::Gcm { .. } => GCM_TAG,
            Sealer::Cm { tag_len, .. } => *tag_len,
        }
    }

    /// Encrypts and authenticates `packet` (header, payload, room for the tag) in place.
    fn seal(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Option<()> {
        let tag_len = self.tag_len();
        let body_end = packet.len() - tag_len;
        match self {
            Sealer::Gcm { aead, salt } => {
                // RFC 7714 §8.1: (0x0000 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt.
                let mut nonce = [0u8; GCM_SALT];
                nonce[2..6].copy_from_slice(&ssrc.to_be_bytes());
                nonce[6..10].copy_from_slice(&roc.to_be_bytes());
                nonce[10..].copy_from_slice(&seq.to_be_bytes());
                nonce.iter_mut().zip(salt.iter()).for_each(|(n, s)| *n ^= s);
                let (aad, rest) = packet.split_at_mut(header_len);
                let (body, tag) = rest.split_at_mut(body_end - header_len);
                aead.seal_in_place(&nonce, aad, body, tag).ok()
            }
            Sealer::Cm {
                cipher,
                mac,
                salt,
                tag_len,
            } => {
                // RFC 3711 §4.1.1: salt·2^16 XOR SSRC·2^64 XOR index·2^16.
                let mut iv = [0u8; 16];
                iv[..CM_SALT].copy_from_slice(salt);
                let index = (u64::from(roc) << 16 | u64::from(seq)).to_be_bytes();
                ssrc.to_be_bytes()
                    .iter()
                    .chain(&index[2..])
                    .zip(&mut iv[4..CM_SALT])
                    .for_each(|(v, i)| *i ^= v);
                cipher
                    .apply_keystream(&iv, &mut packet[header_len..body_end])
                    .ok()?;
                let mut full = [0u8; SHA1_LEN];
                mac.sign(&[&packet[..body_end], &roc.to_be_bytes()], &mut full)
                    .ok()?;
                packet[body_end..].copy_from_slice(&full[..*tag_len]);
                Some(())
            }
        }
    }
}

impl OwnSrtp {
    /// The protection `rtc`'s local context applies, for the profile `rtc` negotiated (by its
    /// `srtpCipher` name) and this side's DTLS role: `None` before the handshake's export, or
    /// unless the SRTP session key derived here is the one `rtc`'s local context was built with
    /// and a probe packet sealed here is byte for byte what `rtc`'s SRTP seals.
    pub(super) fn derive(keys: &WitnessedKeys, srtp_cipher: &str, is_client: bool) -> Option<Self> {
        let (profile, key_len, salt_len) = profile_named(srtp_cipher)?;
        let (secret, seed, expected) = {
            let seen = lock(&keys.0);
            let (secret, seed) = seen.exporter.clone()?;
            (secret, seed, seen.local_key.clone()?)
        };
        let provider = rtc::crypto::default_provider().ok()?;
        let crypto = provider.crypto();
        let material = p_sha256(crypto, secret.as_ref(), &seed, 2 * (key_len + salt_len)).ok()?;
        let m = material.as_ref();
        let (client_key, rest) = m.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_salt, server_salt) = rest.split_at(salt_len);
        let (key, salt) = if is_client {
            (client_key, client_salt)
        } else {
            (server_key, server_salt)
        };
        let (mut own, session_key) = Self::new(crypto, profile, key, salt)?;
        let keyed_alike = rtc::crypto::constant_time_eq(session_key.as_ref(), expected.as_ref());
        (keyed_alike && own.seals_as_rtc(crypto, profile, key, salt)).then_some(own)
    }

    /// The protection for `profile` under a master key and salt, with its SRTP session key.
    fn new(
        crypto: &dyn RTCCrypto,
        profile: ProtectionProfile,
        key: &[u8],
        salt: &[u8],
    ) -> Option<(Self, SecretVec)> {
        let (sealer, session_key) = Sealer::new(crypto, profile, key, salt)?;
        let own = Self {
            sealer,
            rollovers: Vec::new(),
            out: Vec::new(),
        };
        Some((own, session_key))
    }

    /// Whether a probe packet sealed here is what `rtc`'s own SRTP makes of it under the same
    /// master key and salt (the session salt and authentication key, which no witness sees,
    /// derived alike). The probe is never sent, and its SSRC's counter is forgotten.
    fn seals_as_rtc(
        &mut self,
        crypto: &dyn RTCCrypto,
        profile: ProtectionProfile,
        key: &[u8],
        salt: &[u8],
    ) -> bool {
        use rtc::shared::marshal::Marshal;
        let Ok(mut reference) = Context::new(key, salt, profile, None, None, crypto) else {
            return false;
        };
        let mut probe = super::RtpPacket::default();
        probe.header.version = 2;
        probe.header.payload_type = 96;
        probe.header.sequence_number = 0x1234;
        probe.header.timestamp = 0x5678_9abc;
        probe.header.ssrc = 0x0bad_cafe;
        probe.payload = bytes::Bytes::from_static(b"a probe of the session keys, never sent");
        let theirs = probe.marshal().ok().and_then(|plain| {
            reference
                .encrypt_rtp_with_header(&plain, &probe.header)
                .ok()
        });
        let same = match (self.protect(&probe), theirs) {
            (Some(ours), Some(theirs)) => ours == &theirs[..],
            _ => false,
        };
        self.rollovers.clear();
        same
    }

    /// `packet` protected, ready for the wire (valid until the next call).
    pub(super) fn protect(&mut self, packet: &super::RtpPacket) -> Option<&[u8]> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let sealed = self.protect_onto(packet, &mut out);
        self.out = out;
        sealed.map(|len| &self.out[..len])
    }

    /// Appends `packet`, protected, to `out`; its length. On failure `out` is as it was.
    pub(super) fn protect_onto(
        &mut self,
        packet: &super::RtpPacket,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        use rtc::shared::marshal::{Marshal, MarshalSize};
        let header = &packet.header;
        let roc = self
            .rollover(header.ssrc, header.sequence_number)
            .roc_for(header.sequence_number);
        let header_len = header.marshal_size();
        let body_end = header_len + packet.payload.len();
        let len = body_end + self.sealer.tag_len();
        let start = out.len();
        out.resize(start + len, 0);
        let datagram = &mut out[start..];
        let sealed = header.marshal_to(&mut datagram[..header_len]).ok() == Some(header_len) && {
            datagram[header_len..body_end].copy_from_slice(&packet.payload);
            self.sealer
                .seal(
                    datagram,
                    header_len,
                    header.ssrc,
                    roc,
                    header.sequence_number,
                )
                .is_some()
        };
        if !sealed {
            out.truncate(start);
            return None;
        }
        Some(len)
    }

    /// `ssrc`'s counter; a new SSRC starts at `seq` under rollover count 0.
    fn rollover(&mut self, ssrc: u32, seq: u16) -> &mut Rollover {
        let i = match self.rollovers.iter().position(|r| r.ssrc == ssrc) {
            Some(i) => i,
            None => {
                self.rollovers.push(Rollover {
                    ssrc,
                    highest: seq,
                    roc: 0,
                });
                self.rollovers.len() - 1
            }
        };
        &mut self.rollovers[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::Marshal;

    /// For every profile a browser or `rtc` negotiates, what the SFU seals is byte for byte what
    /// `rtc`'s SRTP context seals under the same master key and salt: across a sequence-number
    /// wrap, on two SSRCs, and for resends of packets sent before the wrap (each under the
    /// rollover counter it first went out with).
    #[test]
    fn sealing_matches_rtcs_srtp_across_a_wrap_and_with_resends() {
        let provider = rtc::crypto::default_provider().expect("a crypto provider");
        let crypto = provider.crypto();
        let sent = [65533u16, 65534, 65535, 0, 1, 2];
        let resent = [65534u16, 1, 65535];
        for name in [
            "SRTP_AES128_CM_HMAC_SHA1_80",
            "SRTP_AES128_CM_HMAC_SHA1_32",
            "SRTP_AEAD_AES_128_GCM",
            "SRTP_AEAD_AES_256_GCM",
        ] {
            let (profile, key_len, salt_len) = profile_named(name).expect("a known profile");
            let key: Vec<u8> = (0..key_len as u8)
                .map(|i| i.wrapping_mul(37) ^ 0x5a)
                .collect();
            let salt: Vec<u8> = (0..salt_len as u8)
                .map(|i| i.wrapping_mul(11) ^ 0xc3)
                .collect();
            let (mut own, _) = OwnSrtp::new(crypto, profile, &key, &salt).expect("sealer");
            let mut reference =
                Context::new(&key, &salt, profile, None, None, crypto).expect("rtc's context");
            for (n, seq) in sent.iter().chain(&resent).enumerate() {
                for ssrc in [0x1111_2222, 0x3333_4444] {
                    let mut packet = crate::media::RtpPacket::default();
                    packet.header.version = 2;
                    packet.header.payload_type = 96;
                    packet.header.marker = n % 2 == 0;
                    packet.header.sequence_number = *seq;
                    packet.header.timestamp = 90 * n as u32;
                    packet.header.ssrc = ssrc;
                    packet.payload = vec![n as u8; 100 + 37 * n].into();
                    let plain = packet.marshal().expect("marshal");
                    let theirs = reference
                        .encrypt_rtp_with_header(&plain, &packet.header)
                        .expect("rtc seals");
                    let ours = own.protect(&packet).expect("sealed here");
                    assert!(ours == &theirs[..], "{name}: seq {seq} of ssrc {ssrc:#x}");
                }
            }
        }
    }

    /// The probe check refuses keys that seal differently from `rtc` (a salt derived wrongly
    /// would pass a comparison of the session keys alone).
    #[test]
    fn a_sealer_keyed_apart_from_rtc_fails_the_probe() {
        let provider = rtc::crypto::default_provider().expect("a crypto provider");
        let crypto = provider.crypto();
        let (profile, key_len, salt_len) =
            profile_named("SRTP_AES128_CM_HMAC_SHA1_80").expect("a known profile");
        let (key, salt) = (vec![7u8; key_len], vec![9u8; salt_len]);
        let (mut own, _) = OwnSrtp::new(crypto, profile, &key, &salt).expect("sealer");
        assert!(own.seals_as_rtc(crypto, profile, &key, &salt));
        let other_salt = vec![8u8; salt_len];
        assert!(!own.seals_as_rtc(crypto, profile, &key, &other_salt));
    }
}
