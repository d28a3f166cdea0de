import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.apache.flink.runtime.event.WatermarkEvent;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.io.PushingAsyncDataInput.DataOutput;
import org.apache.flink.streaming.runtime.streamrecord.LatencyMarker;
import org.apache.flink.streaming.runtime.streamrecord.RecordAttributes;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.StatusWatermarkValve;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Golden traces of the real Flink's StatusWatermarkValve (tests/conformance/valve_traces.txt):
 * seeded random sequences of watermarks and idle/active statuses on 1-4 input channels, each
 * input followed by what the valve emitted. brisk's WatermarkValve must emit the same.
 *
 * Usage: ValveTraces OUTPUT
 * Format: "trace SEED CHANNELS", then one line per input: "CH w TS" or "CH s idle|active",
 * then " ->" and the outputs in order ("w TS" / "s idle|active"), comma separated.
 */
public class ValveTraces {
  static class Out implements DataOutput<Object> {
    final List<String> got = new ArrayList<>();
    public void emitRecord(StreamRecord<Object> r) { throw new IllegalStateException(); }
    public void emitWatermark(Watermark w) { got.add("w " + w.getTimestamp()); }
    public void emitWatermarkStatus(WatermarkStatus s) { got.add("s " + (s.isIdle() ? "idle" : "active")); }
    public void emitLatencyMarker(LatencyMarker m) { throw new IllegalStateException(); }
    public void emitRecordAttributes(RecordAttributes a) { throw new IllegalStateException(); }
    public void emitWatermark(WatermarkEvent e) { throw new IllegalStateException(); }
  }

  public static void main(String[] a) throws Exception {
    try (PrintWriter w = new PrintWriter(a[0])) {
      for (int seed = 1; seed <= 400; seed++) {
        Random rng = new Random(seed);
        int channels = 1 + rng.nextInt(4);
        StatusWatermarkValve valve = new StatusWatermarkValve(channels);
        long[] last = new long[channels];
        w.println("trace " + seed + " " + channels);
        int events = 10 + rng.nextInt(60);
        for (int i = 0; i < events; i++) {
          int ch = rng.nextInt(channels);
          Out out = new Out();
          String in;
          int r = rng.nextInt(100);
          if (r < 70) {
            // Mostly forward steps, sometimes equal or backwards, rarely the end-of-input MAX.
            long ts = rng.nextInt(50) == 0 ? Long.MAX_VALUE : last[ch] + rng.nextInt(40) - 8;
            if (ts != Long.MAX_VALUE) last[ch] = Math.max(last[ch], ts);
            valve.inputWatermark(new Watermark(ts), ch, out);
            in = ch + " w " + ts;
          } else {
            boolean idle = rng.nextInt(100) < 60;
            valve.inputWatermarkStatus(idle ? WatermarkStatus.IDLE : WatermarkStatus.ACTIVE, ch, out);
            in = ch + " s " + (idle ? "idle" : "active");
          }
          w.println(in + " ->" + (out.got.isEmpty() ? "" : " " + String.join(", ", out.got)));
        }
      }
    }
  }
}
