import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/** Flink's side of brisk's keyed_count benchmark: the KW events of
 *  shared/BENCHMARKS.md (key = fmix64(i) mod KEYS, unsigned; value = i mod 100)
 *  through keyBy into a rolling reduce of (key, count, sum), emitted per event
 *  into a discarding sink, exactly as bench/src/bin/keyed_count.rs does.
 *  Usage: KeyedCountBench EVENTS PARALLELISM KEYS */
public class KeyedCountBench {
  static long mix(long x){ x ^= x>>>33; x*=0xff51afd7ed558ccdL; x^=x>>>33; x*=0xc4ceb9fe1a85ec53L; x^=x>>>33; return x; }
  public static void main(String[] a) throws Exception {
    long n = Long.parseLong(a[0]); int par = Integer.parseInt(a[1]); long keys = Long.parseLong(a[2]);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(par);
    env.getConfig().enableObjectReuse();
    env.fromSequence(0, n - 1)
      .map(s -> Tuple3.of(Long.remainderUnsigned(mix(s), keys), 1L, s % 100))
      .returns(Types.TUPLE(Types.LONG, Types.LONG, Types.LONG))
      .keyBy(e -> e.f0)
      .reduce((x, y) -> Tuple3.of(x.f0, x.f1 + y.f1, x.f2 + y.f2))
      .sinkTo(new DiscardingSink<>());
    long t0 = System.nanoTime();
    env.execute("keyed-count-bench");
    double secs = (System.nanoTime() - t0) / 1e9;
    System.out.printf("flink_keyed_count events=%d parallelism=%d keys=%d secs=%.3f events_per_s=%.0f%n", n, par, keys, secs, n / secs);
  }
}
