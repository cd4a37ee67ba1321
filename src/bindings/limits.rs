//! Checked versions of the calls that allocate in bulk (`pad` on arrays, strings and blobs,
//! `blob(n)`): a size over the config's `limits:` is an `invalid` error at the call, where Rhai's
//! own versions would ask for the memory at once and abort the process (`a.pad(2e9, 0)`).
//! Rhai's data-size limits stay off because they re-measure a whole array after every method
//! call on it (see `engine::build`).

use crate::bindings::{host, AtCall};
use crate::error::{RResult, RalfError, RhaiResult};
use rhai::plugin::*;
use rhai::{Array, Blob, Dynamic, Engine, ImmutableString, NativeCallContext, INT};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(limits_mod).into());
}

#[export_module]
mod limits_mod {
    use super::*;

    /// Pad an array with `item` to `len` items; more than `limits.max_array_size` is an `invalid`
    /// error (never an out-of-memory abort).
    ///
    /// ```rhai
    /// let a = [1]; a.pad(3, 0); assert(a == [1, 0, 0]);
    /// try { a.pad(2000000000, 0); } catch (e) { assert(e.kind == "invalid"); }
    /// ```
    #[rhai_fn(name = "pad", return_raw)]
    pub fn pad_a(ctx: NativeCallContext, a: &mut Array, len: INT, item: Dynamic) -> RhaiResult<()> {
        pad_array(ctx, a, len, item)
    }

    /// Pad a blob with the byte `value` to `len` bytes, within `limits.max_array_size`.
    ///
    /// ```rhai
    /// let b = blob(1, 7); b.pad(3, 0); assert(b.len() == 3);
    /// ```
    #[rhai_fn(name = "pad", return_raw)]
    pub fn pad_b(ctx: NativeCallContext, b: &mut Blob, len: INT, value: INT) -> RhaiResult<()> {
        pad_blob(ctx, b, len, value)
    }

    /// Pad a string with a character to `len` characters, within `limits.max_string_size` bytes.
    ///
    /// ```rhai
    /// let s = "ab"; s.pad(4, '.'); assert(s == "ab..");
    /// ```
    #[rhai_fn(name = "pad", return_raw)]
    pub fn pad_c(
        ctx: NativeCallContext,
        s: &mut ImmutableString,
        len: INT,
        c: char,
    ) -> RhaiResult<()> {
        pad_string_char(ctx, s, len, c)
    }

    /// Pad a string with repeats of `with` to `len` characters, within `limits.max_string_size`.
    ///
    /// ```rhai
    /// let s = "a"; s.pad(5, "xy"); assert(s == "axyxy");
    /// ```
    #[rhai_fn(name = "pad", return_raw)]
    pub fn pad_s(
        ctx: NativeCallContext,
        s: &mut ImmutableString,
        len: INT,
        with: &str,
    ) -> RhaiResult<()> {
        pad_string(ctx, s, len, with)
    }

    /// A blob of `len` zero bytes, within `limits.max_array_size`.
    ///
    /// ```rhai
    /// assert(blob(4).len() == 4);
    /// ```
    #[rhai_fn(name = "blob", return_raw)]
    pub fn blob_n(ctx: NativeCallContext, len: INT) -> RhaiResult<Blob> {
        blob_len(ctx, len)
    }

    /// A blob of `len` bytes of `value`, within `limits.max_array_size`.
    ///
    /// ```rhai
    /// assert(blob(2, 255)[1] == 255);
    /// ```
    #[rhai_fn(name = "blob", return_raw)]
    pub fn blob_nv(ctx: NativeCallContext, len: INT, value: INT) -> RhaiResult<Blob> {
        blob_len_value(ctx, len, value)
    }
}

fn check(ctx: &NativeCallContext, what: &str, n: usize, string: bool) -> RResult<()> {
    let h = host(ctx)?;
    let l = &h.cfg().limits;
    let (max, key, unit) = if string {
        (l.max_string_size, "max_string_size", "bytes")
    } else {
        (l.max_array_size, "max_array_size", "items")
    };
    if n > max {
        return Err(RalfError::invalid(format!(
            "{what}: {n} {unit} is over the limit of {max} (limits.{key} in the config)"
        )));
    }
    Ok(())
}

fn target(len: INT) -> usize {
    usize::try_from(len).unwrap_or(0)
}

fn pad_array(ctx: NativeCallContext, a: &mut Array, len: INT, item: Dynamic) -> RhaiResult<()> {
    let n = target(len);
    if n > a.len() {
        check(&ctx, "array.pad", n, false).at(&ctx)?;
        a.resize(n, item);
    }
    Ok(())
}

fn pad_blob(ctx: NativeCallContext, b: &mut Blob, len: INT, value: INT) -> RhaiResult<()> {
    let n = target(len);
    if n > b.len() {
        check(&ctx, "blob.pad", n, false).at(&ctx)?;
        b.resize(n, (value & 0xff) as u8);
    }
    Ok(())
}

fn pad_string_char(
    ctx: NativeCallContext,
    s: &mut ImmutableString,
    len: INT,
    c: char,
) -> RhaiResult<()> {
    pad_string(ctx, s, len, c.to_string().as_str())
}

/// Pads to `len` characters (as Rhai's own does).
fn pad_string(
    ctx: NativeCallContext,
    s: &mut ImmutableString,
    len: INT,
    with: &str,
) -> RhaiResult<()> {
    let n = target(len);
    let have = s.chars().count();
    if n <= have || with.is_empty() {
        return Ok(());
    }
    let needed = s.len() + (n - have) * with.chars().next().map(char::len_utf8).unwrap_or(1);
    check(&ctx, "string.pad", needed, true).at(&ctx)?;
    let mut out = s.to_string();
    let mut count = have;
    'outer: while count < n {
        for c in with.chars() {
            if count >= n {
                break 'outer;
            }
            out.push(c);
            count += 1;
        }
    }
    *s = out.into();
    Ok(())
}

fn blob_len(ctx: NativeCallContext, len: INT) -> RhaiResult<Blob> {
    blob_len_value(ctx, len, 0)
}

fn blob_len_value(ctx: NativeCallContext, len: INT, value: INT) -> RhaiResult<Blob> {
    let n = target(len);
    check(&ctx, "blob", n, false).at(&ctx)?;
    Ok(vec![(value & 0xff) as u8; n])
}
