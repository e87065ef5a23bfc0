//! String and geographic scalar functions, shipped with Fungi as a plugin.
//!
//! | function | what |
//! |---|---|
//! | `haversine(lat1, lon1, lat2, lon2)` | great-circle distance in km |
//! | `geohash(lat, lon, precision)` | the geohash cell of a point |
//! | `gcd(a, b)` | greatest common divisor of two BIGINTs |
//! | `slugify(s)` | lower-case ASCII words joined by `-` |
//! | `word_count(s)` | number of whitespace-separated words |

/// Great-circle distance between two points (degrees), in km.
#[fungi_sdk::udf]
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

/// The geohash of a point with `precision` characters (1-12); NULL outside that range.
#[fungi_sdk::udf]
fn geohash(lat: f64, lon: f64, precision: i64) -> Option<String> {
    const BASE32: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    if !(1..=12).contains(&precision)
        || !(-90.0..=90.0).contains(&lat)
        || !(-180.0..=180.0).contains(&lon)
    {
        return None;
    }
    let (mut lat_r, mut lon_r) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut out = String::with_capacity(precision as usize);
    let (mut bit, mut ch, mut even) = (0, 0usize, true);
    while out.len() < precision as usize {
        let (range, v) = if even {
            (&mut lon_r, lon)
        } else {
            (&mut lat_r, lat)
        };
        let mid = (range.0 + range.1) / 2.0;
        ch <<= 1;
        if v >= mid {
            ch |= 1;
            range.0 = mid;
        } else {
            range.1 = mid;
        }
        even = !even;
        bit += 1;
        if bit == 5 {
            out.push(BASE32[ch] as char);
            bit = 0;
            ch = 0;
        }
    }
    Some(out)
}

/// Greatest common divisor (binary GCD); gcd(0, 0) = 0, results are non-negative.
#[fungi_sdk::udf]
fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    if a == 0 {
        return b as i64;
    }
    if b == 0 {
        return a as i64;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            break;
        }
    }
    (a << shift) as i64
}

/// Lower-case ASCII letters and digits, words joined by `-`.
#[fungi_sdk::udf]
fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

/// Number of whitespace-separated words.
#[fungi_sdk::udf]
fn word_count(s: &str) -> i64 {
    s.split_whitespace().count() as i64
}

fungi_sdk::scalar_plugin! {
    name: "strings-geo",
    description: "string and geographic scalar functions",
    functions: [haversine, geohash, gcd, slugify, word_count],
}
