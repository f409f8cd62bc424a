//! S3: request tiers ("Amazon S3 pricing", Requests & data retrievals; "Billing for Amazon S3 error responses").
//!
//! * PUT, COPY, POST and LIST requests are the first tier (class A); GET, HEAD, SELECT and every other request
//!   the second (class B); DELETE (and multipart CANCEL) requests are free.
//! * The bucket owner is billed for `2xx` answers and `4xx` client errors, not for `5xx` server errors.

/// The price tier of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// PUT, COPY, POST, LIST.
    A,
    /// GET, HEAD and every other request.
    B,
    /// DELETE: not charged.
    Free,
}

/// The tier of a request with HTTP `method` on a bucket: `object` when it names a key. A `GET` on the bucket
/// itself lists it (ListObjects), so it is class A.
pub fn request_class(method: &str, object: bool) -> RequestClass {
    match method {
        "PUT" | "POST" => RequestClass::A,
        "GET" if !object => RequestClass::A,
        "DELETE" => RequestClass::Free,
        _ => RequestClass::B,
    }
}

/// Whether a request answered with HTTP `status` is billed: success and client errors are, server errors not.
pub fn billed_status(status: u16) -> bool {
    status < 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_method() {
        assert_eq!(
            request_class("PUT", true),
            RequestClass::A,
            "PutObject and CopyObject"
        );
        assert_eq!(request_class("PUT", false), RequestClass::A, "CreateBucket");
        assert_eq!(
            request_class("POST", false),
            RequestClass::A,
            "DeleteObjects"
        );
        assert_eq!(
            request_class("GET", false),
            RequestClass::A,
            "ListObjectsV2"
        );
        assert_eq!(request_class("GET", true), RequestClass::B, "GetObject");
        assert_eq!(request_class("HEAD", true), RequestClass::B, "HeadObject");
        assert_eq!(request_class("HEAD", false), RequestClass::B, "HeadBucket");
        assert_eq!(request_class("DELETE", true), RequestClass::Free);
        assert_eq!(request_class("OPTIONS", true), RequestClass::B);
    }

    #[test]
    fn server_errors_are_not_billed() {
        assert!(billed_status(200));
        assert!(billed_status(404));
        assert!(!billed_status(500));
        assert!(!billed_status(503));
    }
}
