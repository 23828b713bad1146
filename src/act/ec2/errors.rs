//! SDK errors → [`Ec2Error`]: which class (retried, permission, not found,
//! target gone, refused) and what to say. The types themselves live in
//! [`crate::decide::facts`].

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::decide::facts::{Ec2Error, ErrorClass};

impl Ec2Error {
    pub(crate) fn from_sdk<E, R>(
        operation: &'static str,
        subject: impl Into<String>,
        err: SdkError<E, R>,
    ) -> Ec2Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (class, code, message) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().map(str::to_owned);
                let class = classify(code.as_deref());
                let msg = format!(
                    "{}: {}",
                    code.as_deref().unwrap_or("error"),
                    e.message().unwrap_or("no message")
                );
                (class, code, msg)
            }
            SdkError::TimeoutError(_) => (ErrorClass::Transient, None, "timed out".to_owned()),
            SdkError::DispatchFailure(d) => (
                ErrorClass::Transient,
                None,
                format!(
                    "cannot reach the EC2 endpoint: {}",
                    error_chain(
                        d.as_connector_error()
                            .map(|c| c as &(dyn std::error::Error + 'static))
                    )
                ),
            ),
            SdkError::ResponseError(_) => (
                ErrorClass::Transient,
                None,
                "unreadable response".to_owned(),
            ),
            other => (ErrorClass::Refused, None, format!("{other:?}")),
        };
        Ec2Error {
            operation,
            subject: subject.into(),
            class,
            code,
            message,
        }
    }
}

fn error_chain(e: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    let mut cur = e;
    while let Some(err) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&err.to_string());
        cur = err.source();
    }
    if out.is_empty() {
        "unknown error".into()
    } else {
        out
    }
}

/// Maps an AWS error code to how it is handled.
pub fn classify(code: Option<&str>) -> ErrorClass {
    match code {
        Some(
            "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
            | "RequestTimeout",
        ) => ErrorClass::Transient,
        Some(
            "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "Blocked" | "OptInRequired",
        ) => ErrorClass::Permission,
        Some("InvalidNetworkInterfaceID.NotFound" | "InvalidInstanceID.NotFound") => {
            ErrorClass::TargetGone
        }
        Some(c)
            if c.contains("NotFound")
                || c.ends_with(".Malformed")
                    && c.to_ascii_lowercase().starts_with("invalidroutetableid") =>
        {
            ErrorClass::NotFound
        }
        Some(c)
            if c.starts_with("InvalidInstanceID") || c.starts_with("InvalidNetworkInterfaceID") =>
        {
            ErrorClass::NotFound
        }
        _ => ErrorClass::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(
            classify(Some("RequestLimitExceeded")),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some("UnauthorizedOperation")),
            ErrorClass::Permission
        );
        assert_eq!(
            classify(Some("InvalidRouteTableID.NotFound")),
            ErrorClass::NotFound
        );
        assert_eq!(classify(Some("InvalidInstanceID")), ErrorClass::NotFound);
        assert_eq!(
            classify(Some("InvalidRouteTableId.Malformed")),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(Some("InvalidNetworkInterfaceID.NotFound")),
            ErrorClass::TargetGone
        );
        assert_eq!(
            classify(Some("InvalidInstanceID.NotFound")),
            ErrorClass::TargetGone
        );
        assert_eq!(classify(Some("InvalidParameterValue")), ErrorClass::Refused);
        assert_eq!(classify(None), ErrorClass::Refused);
    }

    fn err(code: &str, message: &str) -> Ec2Error {
        Ec2Error {
            operation: "ReplaceRoute",
            subject: "route table rtb-1".into(),
            class: classify(Some(code)),
            code: Some(code.into()),
            message: format!("{code}: {message}"),
        }
    }

    #[test]
    fn replace_on_a_missing_route_falls_back_to_create_only_on_that_message() {
        // What moto 5.2.5 and EC2 answer (see the table above `impl Ec2Error`
        // in src/decide/facts.rs).
        assert!(err(
            "InvalidParameterValue",
            "There is no route defined for '172.16.0.10/32' in the route table. Use CreateRoute instead."
        )
        .is_route_missing());
        assert!(err("InvalidRoute.NotFound", "no such route").is_route_missing());
        assert!(!err(
            "InvalidParameterValue",
            "Value (x) for parameter cidr is invalid"
        )
        .is_route_missing());
        assert!(err(
            "RouteAlreadyExists",
            "The route identified by 172.16.0.10/32 already exists"
        )
        .is_route_already_there());
        assert!(
            !err("InvalidParameterValue", "There is no route defined for 'x'")
                .is_route_already_there()
        );
    }

    #[test]
    fn gone_target_and_gone_table_are_told_apart_and_say_what_to_do() {
        let eni = err(
            "InvalidNetworkInterfaceID.NotFound",
            "The networkInterface ID 'eni-1' does not exist",
        );
        assert!(eni.is_target_gone() && !eni.is_table_gone());
        assert!(eni.to_string().contains("looked up again"));
        let rtb = err(
            "InvalidRouteTableID.NotFound",
            "The routeTable ID 'rtb-1' does not exist",
        );
        assert!(rtb.is_table_gone() && !rtb.is_target_gone());
        assert_eq!(rtb.class, ErrorClass::NotFound);
        let shown = rtb.to_string();
        assert!(
            shown.contains("rtb-1") && shown.contains("route_tables"),
            "{shown}"
        );
        assert!(!err("InvalidInstanceID", "several network interfaces").is_target_gone());
    }
}
