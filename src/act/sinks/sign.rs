//! Standard Webhooks signing: the secret (`whsec_` + base64, or raw bytes),
//! the signature, and one attempt's signed body and headers.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::render::Request;
use crate::config::WebhookConfig;

/// Why a webhook's `secret_env` value cannot be used as a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the value starts with whsec_ but the rest is not valid base64 (Standard Webhooks secrets are whsec_ + base64 of the key)")]
    BadBase64,
    #[error("the value starts with whsec_ but holds an empty key")]
    Empty,
}

/// The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of the key,
/// or (without the prefix) the value's bytes. A `whsec_` value that is not
/// valid base64 is an error, never silently a raw key.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SecretError::BadBase64)?;
            if key.is_empty() {
                return Err(SecretError::Empty);
            }
            Ok(key)
        }
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// Checks every sink's secrets at startup (`run`, `check`, `test-alert`):
/// the error names the config key, never the value.
pub fn validate(webhooks: &[WebhookConfig]) -> Result<(), String> {
    for (i, w) in webhooks.iter().enumerate() {
        if let Some(s) = &w.secret {
            signing_key(s.expose()).map_err(|e| {
                format!("alerts.webhooks[{i}].secret_env (webhook {}): {e}", w.name)
            })?;
        }
    }
    Ok(())
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, id.ts.body)).
pub fn sign(key: &[u8], id: &str, ts: &str, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// One attempt's body and headers, signed at send time.
#[derive(Debug, Clone)]
pub struct Signed {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The body and headers of one attempt to send `req`, signed at `now`.
pub fn signed(cfg: &WebhookConfig, req: &Request, now: SystemTime) -> Result<Signed, String> {
    let body =
        serde_json::to_string(&req.body).map_err(|e| format!("cannot encode the message: {e}"))?;
    let mut headers = Vec::new();
    if let Some(id) = &req.webhook_id {
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        if let Some(secret) = &cfg.secret {
            let key = signing_key(secret.expose())
                .map_err(|e| format!("secret_env of webhook {}: {e}", cfg.name))?;
            headers.push(("webhook-signature", sign(&key, id, &ts, &body)));
        }
        headers.push(("webhook-id", id.clone()));
        headers.push(("webhook-timestamp", ts));
    }
    Ok(Signed { body, headers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::sinks::fixtures::{failover, sink};
    use crate::act::sinks::render;
    use crate::config::{Secret, SinkKind};
    use std::time::Duration;

    #[test]
    fn standard_webhooks_signature_matches_reference() {
        // Vector from the Standard Webhooks spec's reference implementation.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn whsec_secret_that_is_not_base64_is_a_config_error_naming_the_key() {
        let mut good = sink(SinkKind::Generic);
        good.name = "ok".into();
        let mut bad = sink(SinkKind::Generic);
        bad.name = "audit".into();
        bad.secret = Some(Secret::new("whsec_not*base64!TOPSECRET"));
        let err = validate(&[good.clone(), bad.clone()]).unwrap_err();
        assert!(err.contains("alerts.webhooks[1].secret_env"), "{err}");
        assert!(err.contains("audit") && err.contains("base64"), "{err}");
        assert!(!err.contains("TOPSECRET"), "{err}");
        assert!(validate(&[good]).is_ok());
        // Never silently a raw key at send time either.
        let req = render(&bad, &failover("m"), "r", "w1", SystemTime::now());
        let e = signed(&bad, &req, SystemTime::now()).unwrap_err();
        assert!(!e.contains("TOPSECRET"), "{e}");
        // A plain (non-whsec) value is the key's bytes.
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert_eq!(signing_key("whsec_"), Err(SecretError::Empty));
    }

    #[test]
    fn signature_is_made_at_send_time_with_the_same_id_on_every_attempt() {
        let cfg = sink(SinkKind::Generic);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let req = render(&cfg, &failover("m"), "r", "w1", t0);
        let header = |h: &[(&str, String)], k: &str| {
            h.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let Signed { body, headers: a } = signed(&cfg, &req, t0).unwrap();
        let b = signed(&cfg, &req, t0 + Duration::from_secs(400))
            .unwrap()
            .headers;
        assert_eq!(header(&a, "webhook-id"), header(&b, "webhook-id"));
        assert_eq!(header(&a, "webhook-timestamp"), "1700000000");
        assert_eq!(header(&b, "webhook-timestamp"), "1700000400");
        assert_ne!(
            header(&a, "webhook-signature"),
            header(&b, "webhook-signature")
        );
        let key = signing_key(cfg.secret.as_ref().unwrap().expose()).unwrap();
        assert_eq!(
            header(&b, "webhook-signature"),
            sign(&key, &header(&b, "webhook-id"), "1700000400", &body)
        );
    }
}
