//! Numbers and addresses written as ASCII into byte buffers without the formatting
//! machinery, for what the router writes on every request: request heads, ids, access
//! log lines.

use std::io::Write as _;
use std::net::IpAddr;

/// Lowercase hex digits.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` as 8 lowercase hex digits, all at once in one word (no table, no loop): each
/// nibble is spread into a byte of its own, then turned into its digit. Ids are made of
/// these on every request (request id and trace id: 64 digits), where a digit at a time
/// cost about 500 instructions per request.
pub(crate) fn hex8(n: u32) -> [u8; 8] {
    let x = u64::from(n);
    // Halves into 32-bit lanes, bytes into 16-bit lanes, nibbles into bytes.
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // 1 in the bytes whose nibble is 10 or more (adding 6 carries into bit 4 then; no
    // byte overflows), which go 39 further to land on 'a'.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// `n` as 16 lowercase hex digits (leading zeros included).
pub(crate) fn hex16(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8((n >> 32) as u32));
    out[8..].copy_from_slice(&hex8(n as u32));
    out
}

/// Appends `n` in hex, without leading zeros.
pub(crate) fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends an address (an IPv4-mapped IPv6 one as IPv4), the common IPv4 case without
/// the formatting machinery.
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(*octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests;
