//! Fallible growth of the buffers whose size CARTO's answer decides (a row, a COPY line or tuple that spans
//! network chunks): a failed allocation is an [`ErrorKind::OutOfMemory`](crate::ErrorKind::OutOfMemory)
//! error instead of an abort of the whole process (in PostgreSQL, of the backend and with it the cluster's
//! other sessions).

use bytes::{Bytes, BytesMut};

use crate::error::{Endpoint, Error, Result};

/// Below this, BytesMut's own growth (which reclaims the space of split-off data) is used; small allocations
/// are not made fallible (nothing would be gained).
const SMALL: usize = 1 << 20;

/// The capacity to grow to for `need` bytes: doubling (amortized), but not beyond `ceiling` (the most the
/// buffer can legitimately hold, or a size known to be final) unless `need` itself is beyond it.
fn target(capacity: usize, need: usize, ceiling: usize) -> usize {
    need.max(capacity.saturating_mul(2).min(ceiling))
}

/// Makes room in `v` for `additional` more bytes; see the module documentation.
pub(crate) fn reserve(v: &mut Vec<u8>, additional: usize, ceiling: usize, endpoint: Endpoint, what: &str) -> Result<()> {
    let need = v.len().saturating_add(additional);
    if need <= v.capacity() {
        return Ok(());
    }
    let t = target(v.capacity(), need, ceiling);
    v.try_reserve_exact(t - v.len()).map_err(|_| Error::out_of_memory(endpoint, what, t))
}

/// Appends `data` to `v`, growing it fallibly.
pub(crate) fn extend(v: &mut Vec<u8>, data: &[u8], ceiling: usize, endpoint: Endpoint, what: &str) -> Result<()> {
    reserve(v, data.len(), ceiling, endpoint, what)?;
    v.extend_from_slice(data);
    Ok(())
}

/// Appends `data` to `b`, growing it fallibly once it is large.
pub(crate) fn extend_bytes_mut(b: &mut BytesMut, data: &[u8], ceiling: usize, endpoint: Endpoint, what: &str) -> Result<()> {
    let need = b.len().saturating_add(data.len());
    if need > b.capacity() && need > SMALL {
        let t = target(b.capacity(), need, ceiling);
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(t).map_err(|_| Error::out_of_memory(endpoint, what, t))?;
        v.extend_from_slice(b);
        // A unique Bytes made from a Vec turns back into a BytesMut over the same allocation (no copy).
        *b = BytesMut::from(Bytes::from(v));
    }
    b.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_ceiling_and_keeps_data() {
        let mut v = Vec::new();
        extend(&mut v, &[1; 100], 150, Endpoint::Sql, "x").unwrap();
        extend(&mut v, &[2; 10], 150, Endpoint::Sql, "x").unwrap();
        assert_eq!(v.capacity(), 150, "doubling stops at the ceiling");
        assert_eq!(v.len(), 110);
        // An impossible allocation is an error, not an abort.
        let e = reserve(&mut v, usize::MAX / 2, usize::MAX, Endpoint::CopyTo, "a row").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::OutOfMemory);
        assert!(e.message.contains("a row"), "{e}");
        let mut b = BytesMut::from(&b"abc"[..]);
        extend_bytes_mut(&mut b, &vec![7; SMALL + 5], 4 * SMALL, Endpoint::CopyTo, "x").unwrap();
        assert_eq!(b.len(), SMALL + 8);
        assert_eq!(&b[..4], b"abc\x07");
        let cap = b.capacity();
        let ptr = b.as_ptr();
        let tail = b.split_off(3);
        assert_eq!(tail.len(), SMALL + 5);
        assert!(cap >= SMALL + 8 && ptr == b.as_ptr());
    }
}
