//! Development tokens, as `triplite dev` prints them.

use std::ffi::c_char;

use super::{Failure, guard, into_c_string, text, triplite_status};
use crate::auth::{DevTokenKind, mint_dev_token};

/// Signs a development token with `jwt_secret` (HS256, no expiry): `kind` `"anon"` (the
/// `anonymous` role) or `"secret"` (a service token: bypasses permissions). Free the token
/// with `triplite_string_free`.
///
/// # Safety
/// Strings NULL or NUL-terminated; `out_token` writable; `out_err` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn triplite_token_mint_dev(
    jwt_secret: *const c_char,
    kind: *const c_char,
    out_token: *mut *mut c_char,
    out_err: *mut *mut c_char,
) -> triplite_status {
    guard(out_err, || {
        // SAFETY (all blocks): the pointers follow the documented contract.
        let secret = unsafe { text(jwt_secret, "jwt_secret") }?;
        let kind = match unsafe { text(kind, "kind") }? {
            "anon" => DevTokenKind::Anon,
            "secret" => DevTokenKind::Secret,
            other => return Err(Failure::misuse(format!("`kind` must be \"anon\" or \"secret\", not {other:?}"))),
        };
        if out_token.is_null() {
            return Err(Failure::misuse("`out_token` is NULL"));
        }
        let token = mint_dev_token(secret, kind, "local-project-id")?;
        unsafe { *out_token = into_c_string(token) };
        Ok(())
    })
}
