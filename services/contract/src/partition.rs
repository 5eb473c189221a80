//! The Java client's default partitioner for keyed records (`murmur2`), written out so tests can prove that
//! librdkafka's `murmur2_random` puts a key where a Java producer would, and so tools can predict a key's
//! partition. Nothing here talks to Kafka.

/// The record key of an order's event: its id as a UTF-8 decimal string (design 2.1).
pub fn record_key(order_id: i64) -> String {
    order_id.to_string()
}

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with the seed `0x9747b28c`, little-endian blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The length is an int in Java; keys beyond 2 GiB cannot exist in Kafka, so the cast keeps the value.
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client (and librdkafka's `murmur2_random`) chooses for a non-empty key:
/// `toPositive(murmur2(key)) % partitions`, where `toPositive` masks the sign bit (not `abs`).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Apache Kafka's `UtilsTest.testMurmur2`, computed by the Java implementation.
    #[test]
    fn murmur2_matches_the_java_client_on_known_keys() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), *expected, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_masks_the_sign_bit_like_java_to_positive() {
        // murmur2("21") is negative: toPositive keeps the low 31 bits, which abs() would not.
        let expected = (-973_932_308_i32 & 0x7fff_ffff) % 5;
        assert_eq!(partition_for_key(b"21", 5), expected);
        assert_eq!(partition_for_key(b"21", 1), 0);
    }

    #[test]
    fn record_key_is_the_decimal_order_id() {
        assert_eq!(record_key(42), "42");
    }
}
