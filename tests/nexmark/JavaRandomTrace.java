// Prints sequences of java.util.Random for brisk's port (bench/src/nexmark/random.rs):
//   java tests/nexmark/JavaRandomTrace.java > tests/nexmark/java_random.txt
// Each line: SEED OP VALUE... (OP: int, intN for nextInt(N), long, double).
import java.util.Random;

public class JavaRandomTrace {
    public static void main(String[] args) {
        long[] seeds = {0, 1, 2, 49, 50, 123456789, -1, -987654321, Long.MAX_VALUE, Long.MIN_VALUE, 1L << 47, 10_000_000_000L};
        int[] bounds = {1, 2, 3, 4, 5, 6, 9, 10, 11, 13, 26, 87, 100, 110, 1010, 10000, 1 << 30, (1 << 30) + 1, Integer.MAX_VALUE};
        System.out.println("# java.util.Random sequences: SEED OP VALUES (printed by JavaRandomTrace.java)");
        for (long seed : seeds) {
            StringBuilder sb = new StringBuilder();
            Random r = new Random(seed);
            sb.append(seed).append(" int");
            for (int i = 0; i < 8; i++) sb.append(' ').append(r.nextInt());
            System.out.println(sb);
            sb = new StringBuilder();
            r = new Random(seed);
            sb.append(seed).append(" long");
            for (int i = 0; i < 8; i++) sb.append(' ').append(r.nextLong());
            System.out.println(sb);
            sb = new StringBuilder();
            r = new Random(seed);
            sb.append(seed).append(" double");
            for (int i = 0; i < 8; i++) sb.append(' ').append(r.nextDouble());
            System.out.println(sb);
            for (int bound : bounds) {
                sb = new StringBuilder();
                r = new Random(seed);
                sb.append(seed).append(" int").append(bound);
                for (int i = 0; i < 8; i++) sb.append(' ').append(r.nextInt(bound));
                System.out.println(sb);
            }
        }
    }
}
