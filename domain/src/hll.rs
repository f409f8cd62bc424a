//! A HyperLogLog sketch of unique users, small enough to live in a DynamoDB item.
//!
//! * Precision 12: 4,096 six-bit registers, standard error about 1.6 %.
//! * Sparse while few registers are set (a sorted list of `(register, rank)`), dense (one byte per register in
//!   memory, six bits per register serialized: 3,072 bytes) beyond [`SPARSE_MAX`] registers. The representation
//!   depends only on the register values, so two sketches with the same registers are equal and serialize to
//!   the same bytes however they were built.
//! * Estimation with Ertl's improved raw estimator ("New cardinality estimation algorithms for HyperLogLog
//!   sketches", 2017), which is unbiased from zero to billions without empirical bias tables.
//! * The hash ([`hash64`]) is part of the format: sketches written by one version are merged by the next, so it
//!   must never change without a new format byte.
//!
//! Serialized form (`to_bytes`): byte 0 = format (1 sparse, 2 dense), byte 1 = precision (12), then
//! sparse: LEB128 count, then per set register in increasing order LEB128(index delta) and one rank byte;
//! dense: 3,072 bytes, registers packed six bits each, little-endian bit order.

use std::fmt;

/// Bits of the hash that select the register.
pub const PRECISION: u32 = 12;
/// Number of registers.
pub const REGISTERS: usize = 1 << PRECISION;
/// Highest rank a register can hold: 64 - PRECISION leading zeros + 1.
const MAX_RANK: u8 = (64 - PRECISION + 1) as u8;
/// Most set registers kept sparse: beyond this the dense form is smaller.
pub const SPARSE_MAX: usize = 1024;
const DENSE_BYTES: usize = REGISTERS * 6 / 8;
const FORMAT_SPARSE: u8 = 1;
const FORMAT_DENSE: u8 = 2;

/// Why bytes are not a sketch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HllError {
    #[error("sketch is empty or truncated")]
    Truncated,
    #[error("unknown sketch format {0}")]
    UnknownFormat(u8),
    #[error("sketch precision {0} is not supported, only {PRECISION}")]
    Precision(u8),
    #[error("corrupt sketch: {0}")]
    Corrupt(&'static str),
}

#[derive(Clone)]
enum Repr {
    /// `index << 8 | rank`, sorted by index, no duplicates, rank >= 1.
    Sparse(Vec<u32>),
    /// One register per byte.
    Dense(Box<[u8; REGISTERS]>),
}

/// A HyperLogLog sketch. `Default` is the empty sketch.
#[derive(Clone)]
pub struct Hll {
    repr: Repr,
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

impl fmt::Debug for Hll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, set) = match &self.repr {
            Repr::Sparse(v) => ("sparse", v.len()),
            Repr::Dense(d) => ("dense", d.iter().filter(|&&r| r != 0).count()),
        };
        f.debug_struct("Hll")
            .field("repr", &kind)
            .field("registers_set", &set)
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl PartialEq for Hll {
    /// Equal when every register is equal, whatever the representation.
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Sparse(a), Repr::Sparse(b)) => a == b,
            (Repr::Dense(a), Repr::Dense(b)) => a == b,
            _ => self.registers() == other.registers(),
        }
    }
}

impl Eq for Hll {}

/// The sketch's hash: 64 bits, stable across versions and platforms (part of the serialized format).
pub fn hash64(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ fmix64(u64::from_le_bytes(w)))
            .rotate_left(27)
            .wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ fmix64(u64::from_le_bytes(w)))
            .rotate_left(27)
            .wrapping_mul(K);
    }
    fmix64(h)
}

/// The 64-bit finalizer of MurmurHash3: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The register a [`hash64`] lands in and the rank it offers: the first [`PRECISION`] bits pick the register,
/// the position of the first 1 bit after them (counted from 1, at most 64 - PRECISION + 1) is the rank. The
/// sketch keeps per register the highest rank offered, so a sketch is its set of (register, rank) maxima and
/// can be kept anywhere that can take a maximum (the counter cache's script does).
pub fn register_of(h: u64) -> (u16, u8) {
    let index = (h >> (64 - PRECISION)) as u16;
    let rest = h << PRECISION;
    let rank = if rest == 0 {
        MAX_RANK
    } else {
        (rest.leading_zeros() + 1).min(u32::from(MAX_RANK)) as u8
    };
    (index, rank)
}

/// Highest rank a register can hold.
pub const HIGHEST_RANK: u8 = MAX_RANK;

impl Hll {
    pub fn new() -> Self {
        Hll {
            repr: Repr::Sparse(Vec::new()),
        }
    }

    /// Adds one item (for example a user id's bytes).
    pub fn insert(&mut self, item: &[u8]) {
        self.insert_hash(hash64(item));
    }

    /// Adds an item by its [`hash64`], for callers that add the same item to several sketches.
    /// Any other hash would make the sketch unmergeable with others.
    pub fn insert_hash(&mut self, h: u64) {
        let (index, rank) = register_of(h);
        self.set_max(usize::from(index), rank);
    }

    /// Raises register `index` to `rank` if it is lower (the register-wise maximum that [`Hll::merge`] takes):
    /// how a sketch is rebuilt from registers kept elsewhere (the counter cache). Refuses an index or rank the
    /// sketch cannot hold.
    pub fn raise(&mut self, index: u16, rank: u8) -> Result<(), HllError> {
        if usize::from(index) >= REGISTERS {
            return Err(HllError::Corrupt("register index out of range"));
        }
        if rank == 0 || rank > MAX_RANK {
            return Err(HllError::Corrupt("register rank out of range"));
        }
        self.set_max(usize::from(index), rank);
        Ok(())
    }

    /// The registers that are set, as (index, rank), in index order.
    pub fn set_registers(&self) -> Vec<(u16, u8)> {
        match &self.repr {
            Repr::Sparse(v) => v
                .iter()
                .map(|e| ((e >> 8) as u16, (e & 0xff) as u8))
                .collect(),
            Repr::Dense(d) => d
                .iter()
                .enumerate()
                .filter(|(_, &r)| r != 0)
                .map(|(i, &r)| (i as u16, r))
                .collect(),
        }
    }

    fn set_max(&mut self, index: usize, rank: u8) {
        match &mut self.repr {
            Repr::Dense(d) => {
                if d[index] < rank {
                    d[index] = rank;
                }
            }
            Repr::Sparse(v) => {
                let key = (index as u32) << 8;
                match v.binary_search_by(|e| (e & !0xff).cmp(&key)) {
                    Ok(i) => {
                        if (v[i] & 0xff) < u32::from(rank) {
                            v[i] = key | u32::from(rank);
                        }
                    }
                    Err(i) => {
                        v.insert(i, key | u32::from(rank));
                        if v.len() > SPARSE_MAX {
                            self.densify();
                        }
                    }
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Repr::Sparse(_) = self.repr {
            self.repr = Repr::Dense(self.registers());
        }
    }

    /// All registers, one byte each.
    fn registers(&self) -> Box<[u8; REGISTERS]> {
        match &self.repr {
            Repr::Dense(d) => d.clone(),
            Repr::Sparse(v) => {
                let mut d = Box::new([0u8; REGISTERS]);
                for e in v {
                    d[(e >> 8) as usize] = (e & 0xff) as u8;
                }
                d
            }
        }
    }

    /// Makes this sketch the union of itself and `other` (register-wise maximum).
    pub fn merge(&mut self, other: &Hll) {
        match &other.repr {
            Repr::Sparse(o) => {
                for e in o {
                    self.set_max((e >> 8) as usize, (e & 0xff) as u8);
                }
            }
            Repr::Dense(o) => {
                // A dense sketch has more than SPARSE_MAX registers set, so the union is dense too.
                self.densify();
                if let Repr::Dense(d) = &mut self.repr {
                    for (a, b) in d.iter_mut().zip(o.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Sparse(v) => v.is_empty(),
            Repr::Dense(d) => d.iter().all(|&r| r == 0),
        }
    }

    /// Estimated number of distinct items inserted.
    pub fn estimate(&self) -> u64 {
        // Histogram of register values.
        let mut c = [0u32; MAX_RANK as usize + 1];
        match &self.repr {
            Repr::Sparse(v) => {
                c[0] = (REGISTERS - v.len()) as u32;
                for e in v {
                    c[(e & 0xff) as usize] += 1;
                }
            }
            Repr::Dense(d) => {
                for &r in d.iter() {
                    c[r as usize] += 1;
                }
            }
        }
        if c[0] as usize == REGISTERS {
            return 0;
        }
        let m = REGISTERS as f64;
        let q = usize::from(MAX_RANK) - 1;
        let mut z = m * tau(1.0 - f64::from(c[q + 1]) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(c[k]));
        }
        z += m * sigma(f64::from(c[0]) / m);
        let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
        (alpha_inf * m * m / z).round() as u64
    }

    /// The compact serialized form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.repr {
            Repr::Sparse(v) => {
                let mut out = Vec::with_capacity(4 + v.len() * 3);
                out.push(FORMAT_SPARSE);
                out.push(PRECISION as u8);
                crate::wire::put_varint(&mut out, v.len() as u64);
                let mut prev = 0u32;
                for e in v {
                    let idx = e >> 8;
                    crate::wire::put_varint(&mut out, u64::from(idx - prev));
                    out.push((e & 0xff) as u8);
                    prev = idx;
                }
                out
            }
            Repr::Dense(d) => {
                let mut out = Vec::with_capacity(2 + DENSE_BYTES);
                out.push(FORMAT_DENSE);
                out.push(PRECISION as u8);
                for group in d.chunks_exact(4) {
                    let bits = u32::from(group[0])
                        | u32::from(group[1]) << 6
                        | u32::from(group[2]) << 12
                        | u32::from(group[3]) << 18;
                    out.extend_from_slice(&bits.to_le_bytes()[..3]);
                }
                out
            }
        }
    }

    /// Reads what [`Hll::to_bytes`] wrote; anything else is an error, never a panic.
    pub fn from_bytes(b: &[u8]) -> Result<Hll, HllError> {
        let (&format, rest) = b.split_first().ok_or(HllError::Truncated)?;
        if format != FORMAT_SPARSE && format != FORMAT_DENSE {
            return Err(HllError::UnknownFormat(format));
        }
        let (&precision, body) = rest.split_first().ok_or(HllError::Truncated)?;
        if u32::from(precision) != PRECISION {
            return Err(HllError::Precision(precision));
        }
        let mut hll = Hll::new();
        if format == FORMAT_DENSE {
            if body.len() < DENSE_BYTES {
                return Err(HllError::Truncated);
            }
            if body.len() > DENSE_BYTES {
                return Err(HllError::Corrupt("trailing bytes"));
            }
            let mut d = Box::new([0u8; REGISTERS]);
            for (group, bytes) in d.chunks_exact_mut(4).zip(body.chunks_exact(3)) {
                let bits = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]);
                for (j, r) in group.iter_mut().enumerate() {
                    *r = ((bits >> (6 * j)) & 0x3f) as u8;
                    if *r > MAX_RANK {
                        return Err(HllError::Corrupt("register above the highest rank"));
                    }
                }
            }
            let set = d.iter().filter(|&&r| r != 0).count();
            hll.repr = Repr::Dense(d);
            if set <= SPARSE_MAX {
                // Canonical form: few registers are kept sparse.
                hll.repr = Repr::Sparse(sparse_of(&hll.registers()));
            }
            return Ok(hll);
        }
        let mut r = crate::wire::Reader::new(body);
        let count = r.varint().map_err(|_| HllError::Truncated)?;
        if count > REGISTERS as u64 {
            return Err(HllError::Corrupt("more entries than registers"));
        }
        let mut v = Vec::with_capacity(count as usize);
        let mut idx: u64 = 0;
        for i in 0..count {
            let delta = r.varint().map_err(|_| HllError::Truncated)?;
            if i > 0 && delta == 0 {
                return Err(HllError::Corrupt("register indexes not increasing"));
            }
            idx = idx.saturating_add(delta);
            if idx >= REGISTERS as u64 {
                return Err(HllError::Corrupt("register index out of range"));
            }
            let rank = r.byte().map_err(|_| HllError::Truncated)?;
            if rank == 0 || rank > MAX_RANK {
                return Err(HllError::Corrupt("register rank out of range"));
            }
            v.push((idx as u32) << 8 | u32::from(rank));
        }
        if !r.is_empty() {
            return Err(HllError::Corrupt("trailing bytes"));
        }
        hll.repr = Repr::Sparse(v);
        if count as usize > SPARSE_MAX {
            hll.densify();
        }
        Ok(hll)
    }
}

fn sparse_of(d: &[u8; REGISTERS]) -> Vec<u32> {
    d.iter()
        .enumerate()
        .filter(|(_, &r)| r != 0)
        .map(|(i, &r)| (i as u32) << 8 | u32::from(r))
        .collect()
}

/// sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for x in [0, 1].
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3, for x in [0, 1].
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}
