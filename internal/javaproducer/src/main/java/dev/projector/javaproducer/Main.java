package dev.projector.javaproducer;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Produces records read from standard input with the official Java producer, so that tests can
 * check where the Java client's default partitioner (murmur2 on the key) puts keyed records and
 * that records it writes decode with our Go code.
 *
 * <p>Input: one record per line, tab-separated fields (empty lines are skipped):
 *
 * <pre>
 *   topic  partition  key  value  [header ...]
 * </pre>
 *
 * <ul>
 *   <li>partition: empty for the default partitioner, else the partition number;
 *   <li>key, value: standard base64 (RFC 4648, padded; empty is zero bytes), or "-" for null;
 *   <li>header: name=base64value, or a bare name for a null value. Names are UTF-8 text
 *       without tab or '='; a header may repeat.
 * </ul>
 *
 * <p>All records are read and checked before the first is sent. They are produced with acks=all
 * and idempotence on, then flushed. Output: for each record, in input order, one line
 * "partition offset". On any error the tool prints "javaproducer: ..." to stderr and exits
 * non-zero: 2 for bad arguments or input, 1 when producing failed (the lines of the records
 * before the first failed one are printed).
 *
 * <p>Arguments:
 *
 * <pre>
 *   --bootstrap-servers HOST:PORT[,...]   default: $PROJECTOR_KAFKA_SEEDS
 *   --config FILE                         producer properties (e.g. SASL_SSL settings)
 *   --property KEY=VALUE                  one producer property, repeatable; wins over --config
 * </pre>
 *
 * Either may override the defaults (acks=all, enable.idempotence=true, max.block.ms=30000,
 * delivery.timeout.ms=60000); the serializers are always byte arrays.
 */
public final class Main {
    private static final String SEEDS_ENV = "PROJECTOR_KAFKA_SEEDS";

    /** A usage or input problem: exit code 2. */
    private static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    /** A record that was not written: exit code 1, the message says which and why. */
    private static final class ProduceException extends Exception {
        private static final long serialVersionUID = 1L;

        ProduceException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private Main() {}

    public static void main(String[] args) {
        int code;
        try {
            code = run(args, System.in, System.out);
        } catch (UsageException e) {
            System.err.println("javaproducer: " + e.getMessage());
            code = 2;
        } catch (ProduceException e) {
            System.err.println("javaproducer: " + e.getMessage());
            code = 1;
        } catch (Exception e) {
            System.err.println("javaproducer: " + describe(e));
            code = 1;
        }
        System.out.flush();
        // The producer's threads are gone after close, but an exit code must not wait on any.
        System.exit(code);
    }

    static int run(String[] args, InputStream in, PrintStream out) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "projector-javaproducer");
        String seeds = System.getenv(SEEDS_ENV);
        Properties overrides = new Properties();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--bootstrap-servers":
                    seeds = value(args, ++i, arg);
                    break;
                case "--config":
                    String file = value(args, ++i, arg);
                    try (InputStream f = new FileInputStream(file)) {
                        props.load(f);
                    } catch (IOException e) {
                        throw new UsageException("--config " + file + ": " + e.getMessage());
                    }
                    break;
                case "--property":
                    String kv = value(args, ++i, arg);
                    int eq = kv.indexOf('=');
                    if (eq <= 0) {
                        throw new UsageException("--property " + kv + ": want KEY=VALUE");
                    }
                    overrides.put(kv.substring(0, eq), kv.substring(eq + 1));
                    break;
                case "-h":
                case "--help":
                    throw new UsageException("usage: java -jar javaproducer.jar [--bootstrap-servers HOST:PORT[,...]] "
                            + "[--config FILE] [--property KEY=VALUE]... < records.tsv (see Main.java for the format)");
                default:
                    throw new UsageException("unknown argument " + arg + " (try --help)");
            }
        }
        props.putAll(overrides);
        if (seeds != null && !seeds.isEmpty()) {
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, seeds);
        }
        if (props.getProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, "").isEmpty()) {
            throw new UsageException("no bootstrap servers: pass --bootstrap-servers or set " + SEEDS_ENV);
        }

        List<ProducerRecord<byte[], byte[]>> records = read(in);
        if (records.isEmpty()) {
            return 0;
        }

        List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < records.size(); i++) {
                try {
                    Future<RecordMetadata> f = producer.send(records.get(i));
                    sent.add(f);
                    // A failure the producer knew before sending (e.g. a topic missing from
                    // metadata after max.block.ms) comes as a completed future: stop there
                    // rather than wait as long for every following record.
                    if (f.isDone() && failed(f)) {
                        break;
                    }
                } catch (RuntimeException e) {
                    // An earlier record's failure, if any, is the first to report.
                    producer.flush();
                    int printed = print(sent, out);
                    if (printed < sent.size()) {
                        throw failure(printed, records, cause(sent.get(printed)));
                    }
                    throw failure(i, records, e);
                }
            }
            producer.flush();
            int printed = print(sent, out);
            if (printed < sent.size()) {
                throw failure(printed, records, cause(sent.get(printed)));
            }
            producer.close(Duration.ofSeconds(30));
        }
        return 0;
    }

    /** Prints "partition offset" for the leading records that were written; returns how many. */
    private static int print(List<Future<RecordMetadata>> sent, PrintStream out) throws InterruptedException {
        int n = 0;
        for (Future<RecordMetadata> f : sent) {
            RecordMetadata md;
            try {
                md = f.get();
            } catch (ExecutionException e) {
                break;
            }
            out.println(md.partition() + " " + md.offset());
            n++;
        }
        out.flush();
        return n;
    }

    private static boolean failed(Future<RecordMetadata> f) throws InterruptedException {
        try {
            f.get();
            return false;
        } catch (ExecutionException e) {
            return true;
        }
    }

    private static Throwable cause(Future<RecordMetadata> f) throws InterruptedException {
        try {
            f.get();
            return new IllegalStateException("record was written after all");
        } catch (ExecutionException e) {
            return e.getCause() != null ? e.getCause() : e;
        }
    }

    private static ProduceException failure(int index, List<ProducerRecord<byte[], byte[]>> records, Throwable e) {
        return new ProduceException("record " + (index + 1) + " (topic " + records.get(index).topic() + "): "
                + describe(e), e);
    }

    private static String describe(Throwable e) {
        StringBuilder b = new StringBuilder();
        for (Throwable c = e; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (b.length() > 0) {
                b.append(": ");
            }
            b.append(c.getClass().getSimpleName());
            if (c.getMessage() != null) {
                b.append(" ").append(c.getMessage());
            }
        }
        return b.toString();
    }

    private static String value(String[] args, int i, String flag) throws UsageException {
        if (i >= args.length) {
            throw new UsageException(flag + " needs a value");
        }
        return args[i];
    }

    static List<ProducerRecord<byte[], byte[]>> read(InputStream in) throws IOException, UsageException {
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        int lineNo = 0;
        for (String line; (line = r.readLine()) != null; ) {
            lineNo++;
            if (line.isEmpty()) {
                continue;
            }
            try {
                records.add(parse(line));
            } catch (UsageException | IllegalArgumentException e) {
                throw new UsageException("input line " + lineNo + ": " + e.getMessage());
            }
        }
        return records;
    }

    private static ProducerRecord<byte[], byte[]> parse(String line) throws UsageException {
        String[] f = line.split("\t", -1);
        if (f.length < 4) {
            throw new UsageException("want topic, partition, key, value and headers separated by tabs, got "
                    + f.length + " field(s)");
        }
        String topic = f[0];
        if (topic.isEmpty()) {
            throw new UsageException("empty topic");
        }
        Integer partition = null;
        if (!f[1].isEmpty()) {
            try {
                partition = Integer.valueOf(f[1]);
            } catch (NumberFormatException e) {
                throw new UsageException("partition " + f[1] + " is not a number");
            }
            if (partition < 0) {
                throw new UsageException("partition " + f[1] + " is negative");
            }
        }
        byte[] key = bytes(f[2], "key");
        byte[] value = bytes(f[3], "value");
        List<org.apache.kafka.common.header.Header> headers = new ArrayList<>();
        for (int i = 4; i < f.length; i++) {
            String h = f[i];
            int eq = h.indexOf('=');
            String name = eq < 0 ? h : h.substring(0, eq);
            if (name.isEmpty()) {
                throw new UsageException("header field " + (i - 3) + " has no name");
            }
            byte[] v = eq < 0 ? null : decode(h.substring(eq + 1), "header " + name);
            headers.add(new RecordHeader(name, v));
        }
        return new ProducerRecord<>(topic, partition, null, key, value, headers);
    }

    private static byte[] bytes(String field, String what) throws UsageException {
        return field.equals("-") ? null : decode(field, what);
    }

    private static byte[] decode(String b64, String what) throws UsageException {
        try {
            return Base64.getDecoder().decode(b64);
        } catch (IllegalArgumentException e) {
            throw new UsageException(what + " is not base64: " + e.getMessage());
        }
    }
}
