// Golden key groups from the real Flink: for a raw 64-bit key hash h, brisk's
// MaxParallelism::key_group(h) must equal Flink's assignToKeyGroup(Long h, maxp).
// Regenerate: tools/flink-key-groups.sh (prints the Rust array used in state/src/key_group.rs)
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.util.MathUtils;
long[] hs = {0L, 1L, -1L, 42L, 123456789L, 0x44b3cf86e9b93a8cL, Long.MIN_VALUE, Long.MAX_VALUE, 0xdeadbeefcafebabeL};
int[] maxps = {128, 1000, 32768};
for (long h : hs) for (int m : maxps) System.out.println("(0x" + Long.toHexString(h) + "u64, " + m + ", " + KeyGroupRangeAssignment.assignToKeyGroup(Long.valueOf(h), m) + "),");
for (int c : new int[]{0, 1, -1, 42}) System.out.println("murmur " + c + " " + MathUtils.murmurHash(c));
/exit
