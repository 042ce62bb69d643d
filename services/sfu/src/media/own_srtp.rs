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
//! its transport stats), builds the local context, and keeps it only if its session keys are
//! exactly the ones `rtc`'s local context was built with. When they are not (an `rtc` that
//! computes its keys some other way), the PeerConnection keeps `rtc`'s path: nothing is sent with
//! a key nobody checked.
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
/// Session keys kept after the export: a local and a remote context, SRTP and SRTCP each.
const SESSION_KEYS: usize = 4;

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
    /// Cipher keys (AEAD or AES counter mode) created after the export, in order: `rtc`'s SRTP
    /// contexts' session keys.
    session_keys: Vec<SecretVec>,
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
                seen.session_keys.clear();
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
    /// A cipher keyed after the export: one of `rtc`'s SRTP contexts.
    fn session_key(&self, key: &[u8]) {
        let mut seen = lock(&self.seen);
        if seen.recording && seen.session_keys.len() < SESSION_KEYS {
            seen.session_keys.push(SecretVec::new(key.to_vec()));
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
        seen.session_keys.clear();
        seen.recording = false;
    }
}

/// A subscriber PeerConnection's own SRTP context for its outgoing RTP.
pub(super) struct OwnSrtp {
    context: Context,
    /// The packet marshalled, before protection (kept to spare an allocation per packet).
    plain: Vec<u8>,
}

impl OwnSrtp {
    /// The context `rtc`'s local one was built with, for the profile `rtc` negotiated (by its
    /// `srtpCipher` name) and this side's DTLS role, checked against the session keys `rtc`'s
    /// local context was built with; `None` before the handshake's export, or when they differ.
    pub(super) fn derive(keys: &WitnessedKeys, srtp_cipher: &str, is_client: bool) -> Option<Self> {
        let (profile, key_len, salt_len) = profile_named(srtp_cipher)?;
        let (secret, seed, rtcs) = {
            let seen = lock(&keys.0);
            let (secret, seed) = seen.exporter.clone()?;
            (secret, seed, seen.session_keys.clone())
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
        // Built through a witness that records from the start: its session keys, to compare.
        let recorder = WitnessCrypto {
            inner: provider.clone(),
            seen: Arc::new(Mutex::new(Witnessed {
                recording: true,
                ..Witnessed::default()
            })),
        };
        let context = Context::new(key, salt, profile, None, None, &recorder).ok()?;
        let ours = std::mem::take(&mut lock(&recorder.seen).session_keys);
        // `rtc` builds its local context first: its SRTP and SRTCP session keys lead.
        let same = ours.len() == 2
            && rtcs.len() >= 2
            && ours
                .iter()
                .zip(&rtcs)
                .all(|(a, b)| rtc::crypto::constant_time_eq(a.as_ref(), b.as_ref()));
        same.then(|| Self {
            context,
            plain: Vec::new(),
        })
    }

    /// `packet` protected, ready for the wire.
    pub(super) fn protect(&mut self, packet: &super::RtpPacket) -> Option<bytes::BytesMut> {
        use rtc::shared::marshal::{Marshal, MarshalSize};
        self.plain.resize(packet.marshal_size(), 0);
        let len = packet.marshal_to(&mut self.plain).ok()?;
        self.context
            .encrypt_rtp_with_header(&self.plain[..len], &packet.header)
            .ok()
    }
}
