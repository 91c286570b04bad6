//! Key choice: uniform, or Zipfian after Gray et al., "Quickly Generating
//! Billion-Record Synthetic Databases" (SIGMOD 1994), as YCSB's
//! `ZipfianGenerator` does, with YCSB's scrambling (`ScrambledZipfian`):
//! the rank drawn is hashed (FNV-1a) onto the key space, so the hot keys
//! are spread over it rather than all at its start.

/// A xorshift64* generator: fast, deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How keys are chosen.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform { n: u64 },
    Zipfian(Zipfian),
}

impl KeyChooser {
    pub fn next(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform { n } => rng.next_u64() % n,
            KeyChooser::Zipfian(z) => fnv1a(z.rank(rng)) % z.n,
        }
    }
}

/// Zipfian ranks over `0..n` with exponent `theta` (rank 0 most popular).
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub fn new(n: u64, theta: f64) -> Zipfian {
        assert!(n >= 2 && theta > 0.0 && theta < 1.0);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian { n, theta, alpha: 1.0 / (1.0 - theta), zetan, eta }
    }

    pub fn rank(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

fn fnv1a(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With θ = 0.99 over 100,000 items the most popular item has
    /// probability 1/ζ(n) ≈ 0.0817, and the top 1% of items get roughly
    /// 60% of the draws.
    #[test]
    fn zipfian_matches_its_distribution() {
        let z = Zipfian::new(100_000, 0.99);
        let mut rng = Rng::new(1);
        let draws = 400_000;
        let mut counts = vec![0u32; 100_000];
        for _ in 0..draws {
            counts[z.rank(&mut rng) as usize] += 1;
        }
        let p0 = f64::from(counts[0]) / draws as f64;
        assert!((p0 - 1.0 / z.zetan).abs() < 0.005, "p0 {p0}, expected {}", 1.0 / z.zetan);
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[1000]);
        let top1: u32 = counts[..1000].iter().sum();
        let share = f64::from(top1) / draws as f64;
        assert!((0.5..0.7).contains(&share), "top 1% share {share}");
    }

    #[test]
    fn uniform_covers_the_key_space() {
        let k = KeyChooser::Uniform { n: 10 };
        let mut rng = Rng::new(2);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[k.next(&mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }
}
