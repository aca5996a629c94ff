package dev.projector.benchpeers;

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of the benchmark: counts the records of a topic by key
 * (groupByKey().count() into an in-memory key-value store, backed by its changelog topic) in a new
 * application (consumer group), until it has seen the last offset of every partition as the topic
 * was at start. Then it sums the store's counts and prints one line of key=value pairs:
 *
 * <pre>
 * processed=N sum=S keys=K elapsed_ns=E cpu_ns=C first_after_ms=F kafka_streams=4.3.1 java=17.0.15
 * </pre>
 *
 * elapsed_ns and cpu_ns (this process, all threads: JIT and GC too) run from the first record to
 * the last, so JVM start and the group join are not in them; first_after_ms is the JVM's uptime at
 * the first record. Arguments, all required but threads:
 *
 * <pre>
 * --bootstrap HOST:PORT --topic T --app-id ID --guarantee at_least_once|exactly_once_v2
 * --state-dir DIR [--threads 1] [--timeout-s 600] [--warmup false]
 * </pre>
 *
 * With --warmup true it first counts the topic once under another application ID, unreported, so
 * that the measured run starts with compiled hot paths (first_after_ms then includes the warm-up).
 *
 * It exits 0 after printing, 1 on a timeout or an error (message on stderr), and deletes its
 * internal topics (the changelog) before exiting.
 */
public final class Main {
    private static final String STORE = "counts";

    private Main() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> a = parse(args);
        String bootstrap = required(a, "bootstrap");
        String topic = required(a, "topic");
        String appId = required(a, "app-id");
        String guarantee = required(a, "guarantee");
        String stateDir = required(a, "state-dir");
        int threads = Integer.parseInt(a.getOrDefault("threads", "1"));
        long timeoutS = Long.parseLong(a.getOrDefault("timeout-s", "600"));

        long[] ends;
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            ends = new long[d.partitions().size()];
            Map<TopicPartition, OffsetSpec> req = new HashMap<>();
            for (int p = 0; p < ends.length; p++) {
                req.put(new TopicPartition(topic, p), OffsetSpec.latest());
            }
            var res = admin.listOffsets(req).all().get();
            for (var e : res.entrySet()) {
                ends[e.getKey().partition()] = e.getValue().offset();
            }
        }
        boolean warmup = Boolean.parseBoolean(a.getOrDefault("warmup", "false"));
        int rc = 0;
        try {
            if (warmup) {
                // The same run under another application ID, unreported: the JIT has compiled
                // the hot paths before the measured run starts.
                runOnce(bootstrap, topic, appId + "-warmup", guarantee, stateDir, threads, timeoutS, ends);
            }
            System.out.println(runOnce(bootstrap, topic, appId, guarantee, stateDir, threads, timeoutS, ends));
            System.out.flush();
        } catch (Exception e) {
            System.err.println("benchpeers-streams: " + e);
            rc = 1;
        }
        System.exit(rc);
    }

    /** Counts the topic once in application appId and returns the report line. */
    private static String runOnce(String bootstrap, String topic, String appId, String guarantee, String stateDir,
            int threads, long timeoutS, long[] ends) throws Exception {
        Progress progress = new Progress(ends);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder b = new StreamsBuilder();
        b.stream(topic, Consumed.with(Serdes.String(), Serdes.ByteArray()))
                .processValues(() -> new Tap(progress))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore(STORE))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("benchpeers-streams: " + e);
            progress.failed(e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        try {
            streams.start();
            if (!progress.done.await(timeoutS, TimeUnit.SECONDS)) {
                throw new IllegalStateException("timeout after " + timeoutS + "s: processed " + progress.processed.get());
            }
            if (progress.error != null) {
                throw new IllegalStateException("stream thread failed", progress.error);
            }
            long[] sum = sumStore(streams, timeoutS);
            return String.format("processed=%d sum=%d keys=%d elapsed_ns=%d cpu_ns=%d first_after_ms=%d kafka_streams=%s java=%s",
                    progress.processed.get(), sum[0], sum[1],
                    progress.lastNanos - progress.firstNanos, progress.lastCpu - progress.firstCpu,
                    progress.firstUptimeMs, AppInfoParser.getVersion(), System.getProperty("java.version"));
        } finally {
            streams.close(Duration.ofSeconds(30));
            streams.cleanUp();
            deleteInternalTopics(bootstrap, appId);
        }
    }

    /** Sums the counts in the store, retrying while the store is not queryable (a rebalance). */
    private static long[] sumStore(KafkaStreams streams, long timeoutS) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
        while (true) {
            try {
                ReadOnlyKeyValueStore<String, Long> st = streams.store(
                        StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.keyValueStore()));
                long sum = 0, keys = 0;
                try (KeyValueIterator<String, Long> it = st.all()) {
                    while (it.hasNext()) {
                        KeyValue<String, Long> kv = it.next();
                        sum += kv.value;
                        keys++;
                    }
                }
                return new long[] {sum, keys};
            } catch (org.apache.kafka.streams.errors.InvalidStateStoreException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                Thread.sleep(50);
            }
        }
    }

    private static void deleteInternalTopics(String bootstrap, String appId) {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            List<String> mine = new ArrayList<>();
            for (String t : admin.listTopics().names().get()) {
                if (t.startsWith(appId + "-")) {
                    mine.add(t);
                }
            }
            if (!mine.isEmpty()) {
                admin.deleteTopics(mine).all().get();
            }
        } catch (Exception e) {
            System.err.println("benchpeers-streams: deleting the internal topics: " + e);
        }
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                throw new IllegalArgumentException("want --name value pairs, got " + String.join(" ", args));
            }
            m.put(args[i].substring(2), args[i + 1]);
        }
        return m;
    }

    private static String required(Map<String, String> a, String name) {
        String v = a.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    private static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    /** What the stream threads have seen: records, and which partitions reached their end. */
    static final class Progress {
        final long[] ends;
        final AtomicLong processed = new AtomicLong();
        final AtomicIntegerArray partDone;
        final AtomicInteger partsDone = new AtomicInteger();
        final CountDownLatch done = new CountDownLatch(1);
        volatile long firstNanos, firstCpu, firstUptimeMs, lastNanos, lastCpu;
        volatile Throwable error;

        Progress(long[] ends) {
            this.ends = ends;
            partDone = new AtomicIntegerArray(ends.length);
            for (int p = 0; p < ends.length; p++) {
                if (ends[p] == 0) {
                    mark(p);
                }
            }
        }

        void saw(int partition, long offset) {
            if (processed.incrementAndGet() == 1) {
                first();
            }
            if (offset >= ends[partition] - 1) {
                mark(partition);
            }
        }

        private synchronized void first() {
            firstNanos = System.nanoTime();
            firstCpu = cpuNanos();
            firstUptimeMs = ManagementFactory.getRuntimeMXBean().getUptime();
        }

        private void mark(int partition) {
            if (partDone.compareAndSet(partition, 0, 1) && partsDone.incrementAndGet() == ends.length) {
                synchronized (this) {
                    lastNanos = System.nanoTime();
                    lastCpu = cpuNanos();
                }
                done.countDown();
            }
        }

        void failed(Throwable e) {
            error = e;
            done.countDown();
        }
    }

    /** Passes records on to the count, then tells progress where it stands. */
    static final class Tap implements FixedKeyProcessor<String, byte[], byte[]> {
        private final Progress progress;
        private FixedKeyProcessorContext<String, byte[]> ctx;

        Tap(Progress progress) {
            this.progress = progress;
        }

        @Override
        public void init(FixedKeyProcessorContext<String, byte[]> context) {
            ctx = context;
        }

        @Override
        public void process(FixedKeyRecord<String, byte[]> record) {
            ctx.forward(record);
            ctx.recordMetadata().ifPresent(m -> progress.saw(m.partition(), m.offset()));
        }
    }
}
