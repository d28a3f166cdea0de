import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.api.java.tuple.Tuple4;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.datastream.WindowedStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.evictors.CountEvictor;
import org.apache.flink.streaming.api.windowing.evictors.TimeEvictor;
import org.apache.flink.streaming.api.windowing.triggers.ContinuousEventTimeTrigger;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.streaming.api.windowing.windows.Window;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * Flink's side of brisk's window_csv example (tests/conformance): the same pipeline on the
 * same CSV, parallelism 1, so that golden outputs come from the real Flink.
 *
 * Usage: WindowCsv INPUT SPEC OUT_OF_ORDERNESS_MS ALLOWED_LATENESS_MS EVERY_EVENT(0|1) OUTPUT LATE_OUTPUT [NAME=VALUE...]
 * SPEC: tumble:SIZE[:OFFSET] | hop:SIZE:SLIDE[:OFFSET] | session:GAP | count:N[:SLIDE]
 * NAME=VALUE (time windows only, as window_csv's options of the same name):
 *   input=PATH          a further input: its own source and watermarks, unioned before key_by
 *   trigger=continuous:MS  ContinuousEventTimeTrigger instead of the event-time trigger
 *   evictor=count:N | evictor=time:MS  CountEvictor / TimeEvictor (evicting before the function)
 *   idleness=MS         WatermarkStrategy.withIdleness on every input
 * Input rows key,timestamp_ms,value. Output rows key,window_start,window_end,count,sum (count
 * windows: smallest and largest element timestamp instead); late rows key,timestamp_ms,value.
 */
public class WindowCsv {
  /** count, sum, min timestamp, max timestamp */
  static class CountSum implements AggregateFunction<Tuple3<String, Long, Double>, Tuple4<Long, Double, Long, Long>, Tuple4<Long, Double, Long, Long>> {
    public Tuple4<Long, Double, Long, Long> createAccumulator() { return Tuple4.of(0L, 0.0, Long.MAX_VALUE, Long.MIN_VALUE); }
    public Tuple4<Long, Double, Long, Long> add(Tuple3<String, Long, Double> e, Tuple4<Long, Double, Long, Long> a) {
      return Tuple4.of(a.f0 + 1, a.f1 + e.f2, Math.min(a.f2, e.f1), Math.max(a.f3, e.f1));
    }
    public Tuple4<Long, Double, Long, Long> getResult(Tuple4<Long, Double, Long, Long> a) { return a; }
    public Tuple4<Long, Double, Long, Long> merge(Tuple4<Long, Double, Long, Long> a, Tuple4<Long, Double, Long, Long> b) {
      return Tuple4.of(a.f0 + b.f0, a.f1 + b.f1, Math.min(a.f2, b.f2), Math.max(a.f3, b.f3));
    }
  }

  static class Row<W extends Window> extends ProcessWindowFunction<Tuple4<Long, Double, Long, Long>, String, String, W> {
    public void process(String key, Context ctx, Iterable<Tuple4<Long, Double, Long, Long>> in, Collector<String> out) {
      Tuple4<Long, Double, Long, Long> a = in.iterator().next();
      Window w = ctx.window();
      long start = w instanceof TimeWindow ? ((TimeWindow) w).getStart() : a.f2;
      long end = w instanceof TimeWindow ? ((TimeWindow) w).getEnd() : a.f3;
      out.collect(key + "," + start + "," + end + "," + a.f0 + "," + a.f1);
    }
  }

  /** Emits max timestamp - bound - 1 after every event. */
  static class EveryEvent implements WatermarkGenerator<Tuple3<String, Long, Double>> {
    final long bound; long max;
    EveryEvent(long bound) { this.bound = bound; this.max = Long.MIN_VALUE + bound + 1; }
    public void onEvent(Tuple3<String, Long, Double> e, long ts, WatermarkOutput out) {
      max = Math.max(max, ts);
      out.emitWatermark(new Watermark(max - bound - 1));
    }
    public void onPeriodicEmit(WatermarkOutput out) {}
  }

  static List<Tuple3<String, Long, Double>> read(String input) throws Exception {
    List<Tuple3<String, Long, Double>> rows = new ArrayList<>();
    for (String line : Files.readAllLines(Paths.get(input))) {
      if (line.isBlank()) continue;
      String[] f = line.split(",");
      rows.add(Tuple3.of(f[0], Long.parseLong(f[1].trim()), Double.parseDouble(f[2].trim())));
    }
    return rows;
  }

  public static void main(String[] a) throws Exception {
    String[] spec = a[1].split(":");
    long ooo = Long.parseLong(a[2]); long lateness = Long.parseLong(a[3]); boolean everyEvent = a[4].equals("1");
    List<String> inputs = new ArrayList<>(List.of(a[0]));
    String trigger = null, evictor = null; long idleness = -1;
    for (int i = 7; i < a.length; i++) {
      String[] nv = a[i].split("=", 2);
      switch (nv[0]) {
        case "input": inputs.add(nv[1]); break;
        case "trigger": trigger = nv[1]; break;
        case "evictor": evictor = nv[1]; break;
        case "idleness": idleness = Long.parseLong(nv[1]); break;
        default: throw new IllegalArgumentException("unknown option " + a[i]);
      }
    }
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(1);
    WatermarkStrategy<Tuple3<String, Long, Double>> strategy = everyEvent
        ? WatermarkStrategy.forGenerator(ctx -> new EveryEvent(ooo))
        : WatermarkStrategy.<Tuple3<String, Long, Double>>forBoundedOutOfOrderness(Duration.ofMillis(ooo));
    if (idleness >= 0) strategy = strategy.withIdleness(Duration.ofMillis(idleness));
    final WatermarkStrategy<Tuple3<String, Long, Double>> chosen = strategy;
    DataStream<Tuple3<String, Long, Double>> in = null;
    for (String input : inputs) {
      DataStream<Tuple3<String, Long, Double>> one = env.fromData(read(input))
          .returns(Types.TUPLE(Types.STRING, Types.LONG, Types.DOUBLE))
          .assignTimestampsAndWatermarks(chosen.withTimestampAssigner((e, t) -> e.f1));
      in = in == null ? one : in.union(one);
    }
    KeyedStream<Tuple3<String, Long, Double>, String> keyed = in.keyBy(e -> e.f0);
    OutputTag<Tuple3<String, Long, Double>> lateTag = new OutputTag<>("late", Types.TUPLE(Types.STRING, Types.LONG, Types.DOUBLE));
    SingleOutputStreamOperator<String> result;
    switch (spec[0]) {
      case "count": {
        long n = Long.parseLong(spec[1]);
        result = (spec.length > 2 ? keyed.countWindow(n, Long.parseLong(spec[2])) : keyed.countWindow(n))
            .aggregate(new CountSum(), new Row<>());
        break;
      }
      default: {
        WindowedStream<Tuple3<String, Long, Double>, String, TimeWindow> w;
        if (spec[0].equals("tumble")) {
          long off = spec.length > 2 ? Long.parseLong(spec[2]) : 0;
          w = keyed.window(TumblingEventTimeWindows.of(Duration.ofMillis(Long.parseLong(spec[1])), Duration.ofMillis(off)));
        } else if (spec[0].equals("hop")) {
          long off = spec.length > 3 ? Long.parseLong(spec[3]) : 0;
          w = keyed.window(SlidingEventTimeWindows.of(Duration.ofMillis(Long.parseLong(spec[1])), Duration.ofMillis(Long.parseLong(spec[2])), Duration.ofMillis(off)));
        } else {
          w = keyed.window(EventTimeSessionWindows.withGap(Duration.ofMillis(Long.parseLong(spec[1]))));
        }
        if (trigger != null) {
          String[] t = trigger.split(":");
          if (!t[0].equals("continuous")) throw new IllegalArgumentException("unknown trigger " + trigger);
          w = w.trigger(ContinuousEventTimeTrigger.of(Duration.ofMillis(Long.parseLong(t[1]))));
        }
        if (evictor != null) {
          String[] e = evictor.split(":");
          if (e[0].equals("count")) w = w.evictor(CountEvictor.of(Long.parseLong(e[1])));
          else if (e[0].equals("time")) w = w.evictor(TimeEvictor.of(Duration.ofMillis(Long.parseLong(e[1]))));
          else throw new IllegalArgumentException("unknown evictor " + evictor);
        }
        result = w.allowedLateness(Duration.ofMillis(lateness)).sideOutputLateData(lateTag).aggregate(new CountSum(), new Row<>());
      }
    }
    DataStream<String> late = result.getSideOutput(lateTag).map(e -> "L" + e.f0 + "," + e.f1 + "," + e.f2).returns(Types.STRING);
    List<String> out = new ArrayList<>(), lateRows = new ArrayList<>();
    try (CloseableIterator<String> it = result.map(s -> "R" + s).returns(Types.STRING).union(late).executeAndCollect()) {
      while (it.hasNext()) { String s = it.next(); (s.charAt(0) == 'R' ? out : lateRows).add(s.substring(1)); }
    }
    Files.write(Paths.get(a[5]), out);
    Files.write(Paths.get(a[6]), lateRows);
  }
}
