package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvJavaProducerJar names the runnable jar of internal/javaproducer: the official Java producer
// (org.apache.kafka:kafka-clients) behind a line-per-record stdin protocol. scripts/test.sh and
// scripts/infra.sh build it with Maven and set it.
const EnvJavaProducerJar = "PROJECTOR_JAVA_PRODUCER_JAR"

const howToBuildJavaProducer = "scripts/test.sh builds it before the tests (needs a JDK 17+ and Maven, " +
	"which it installs with apt-get where it can); for a by-hand environment `eval \"$(scripts/infra.sh env)\"` " +
	"builds it and exports " + EnvJavaProducerJar

// JavaProducerEnv produces records with the official Java producer, one JVM per [JavaProducerEnv.Produce],
// so tests can check what the Java client does where our Go code must agree with it: the default
// partitioner (murmur2 of the key) and the record header contract.
type JavaProducerEnv struct {
	Java  string   // the java binary
	Jar   string   // the jar named by PROJECTOR_JAVA_PRODUCER_JAR
	Seeds []string // bootstrap servers
	// Properties are producer configs, written to a file of the test's (so that a password never
	// appears on a command line). They override the tool's defaults: acks=all,
	// enable.idempotence=true, max.block.ms=30000, delivery.timeout.ms=60000.
	Properties map[string]string

	t testing.TB
}

// JavaRecord is a record for [JavaProducerEnv.Produce].
type JavaRecord struct {
	Topic string
	Key   []byte // nil: a record without a key
	Value []byte // nil: a null value (a tombstone)
	// Headers in order; a nil Value is a null header value. Keys must not contain '=', tab or
	// newline.
	Headers []kgo.RecordHeader
	// ManualPartition sends the record to Partition. Otherwise the producer's default
	// partitioner chooses: murmur2 of the key, or a sticky partition for a record without one.
	ManualPartition bool
	Partition       int32
}

// Placed is where the broker wrote a record.
type Placed struct {
	Partition int32
	Offset    int64
}

// JavaProducer returns a Java producer for kafka's plaintext listener. Without the jar named by
// PROJECTOR_JAVA_PRODUCER_JAR or without a java binary ($JAVA_HOME/bin/java, else java on PATH)
// the test fails when real servers are required (PROJECTOR_REQUIRE_REAL=1 or CI=true), saying what
// is missing and how to build it, and is skipped otherwise.
func JavaProducer(t testing.TB, kafka *KafkaEnv) *JavaProducerEnv {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if RequireReal() {
			t.Fatalf("testenv: this test produces with the official Java producer, but %s: %s", what, howToBuildJavaProducer)
		}
		t.Skipf("testenv: no Java producer (%s); %s", what, howToBuildJavaProducer)
	}
	jar := os.Getenv(EnvJavaProducerJar)
	if jar == "" {
		missing(EnvJavaProducerJar + " is unset")
	}
	if _, err := os.Stat(jar); err != nil {
		missing(fmt.Sprintf("%s: %v", EnvJavaProducerJar, err))
	}
	java := "java"
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
	}
	path, err := exec.LookPath(java)
	if err != nil {
		missing(fmt.Sprintf("no java binary (%v)", err))
	}
	return &JavaProducerEnv{Java: path, Jar: jar, Seeds: slices.Clone(kafka.Seeds), t: t}
}

// SASLSSL returns a copy of p that connects to the SASL_SSL listener l, trusting only l's CA and
// authenticating with mechanism (SCRAM-SHA-256 or SCRAM-SHA-512) as l's user.
func (p *JavaProducerEnv) SASLSSL(l *SecureListener, mechanism string) *JavaProducerEnv {
	c := *p
	c.Seeds = slices.Clone(l.Seeds)
	c.Properties = map[string]string{
		"security.protocol":       "SASL_SSL",
		"sasl.mechanism":          mechanism,
		"sasl.jaas.config":        fmt.Sprintf("org.apache.kafka.common.security.scram.ScramLoginModule required username=%s password=%s;", jaasQuote(l.Username), jaasQuote(l.Password)),
		"ssl.truststore.type":     "PEM",
		"ssl.truststore.location": l.CAFile,
	}
	for k, v := range p.Properties {
		if _, ok := c.Properties[k]; !ok {
			c.Properties[k] = v
		}
	}
	return &c
}

// jaasQuote quotes s for a JAAS option value: double quotes, with '\' and '"' escaped.
func jaasQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Produce writes records in order with one Java producer, flushes, and returns where each was
// written, in the order given. ctx bounds the whole run, JVM start included (about a second).
// On an error the records before the first failed one are returned with it.
func (p *JavaProducerEnv) Produce(ctx context.Context, records []JavaRecord) ([]Placed, error) {
	var in bytes.Buffer
	for i, r := range records {
		if err := writeJavaRecord(&in, r); err != nil {
			return nil, fmt.Errorf("testenv: java producer: record %d: %w", i+1, err)
		}
	}
	config, err := p.writeProperties()
	if err != nil {
		return nil, fmt.Errorf("testenv: java producer: %w", err)
	}
	defer os.Remove(config)

	// A short-lived client: C1 compiles fast enough, and one GC thread is plenty.
	cmd := exec.CommandContext(ctx, p.Java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-jar", p.Jar, "--bootstrap-servers", strings.Join(p.Seeds, ","), "--config", config)
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()

	placed, parseErr := parsePlaced(&stdout)
	if runErr != nil {
		return placed, fmt.Errorf("testenv: java producer (%s): %w: %s", p.Jar, runErr, strings.TrimSpace(stderr.String()))
	}
	if parseErr != nil {
		return placed, fmt.Errorf("testenv: java producer: %w", parseErr)
	}
	if len(placed) != len(records) {
		return placed, fmt.Errorf("testenv: java producer reported %d placements for %d records", len(placed), len(records))
	}
	return placed, nil
}

func parsePlaced(out *bytes.Buffer) ([]Placed, error) {
	var placed []Placed
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		partition, offset, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return placed, fmt.Errorf("unexpected output line %q (want \"partition offset\")", sc.Text())
		}
		part, err1 := strconv.ParseInt(partition, 10, 32)
		off, err2 := strconv.ParseInt(offset, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return placed, fmt.Errorf("unexpected output line %q: %w", sc.Text(), err)
		}
		placed = append(placed, Placed{Partition: int32(part), Offset: off})
	}
	return placed, sc.Err()
}

// writeJavaRecord writes r in the tool's input format (see internal/javaproducer's Main.java):
// topic, partition (empty: default partitioner), key, value and headers separated by tabs,
// bytes in base64 and null as "-".
func writeJavaRecord(w *bytes.Buffer, r JavaRecord) error {
	if r.Topic == "" || strings.ContainsAny(r.Topic, "\t\r\n") {
		return fmt.Errorf("topic %q is empty or holds a tab or newline", r.Topic)
	}
	w.WriteString(r.Topic)
	w.WriteByte('\t')
	if r.ManualPartition {
		if r.Partition < 0 {
			return fmt.Errorf("partition %d is negative", r.Partition)
		}
		w.WriteString(strconv.FormatInt(int64(r.Partition), 10))
	}
	for _, b := range [][]byte{r.Key, r.Value} {
		w.WriteByte('\t')
		writeNullableBase64(w, b)
	}
	for _, h := range r.Headers {
		if h.Key == "" || strings.ContainsAny(h.Key, "=\t\r\n") || !utf8.ValidString(h.Key) {
			return fmt.Errorf("header key %q is empty, not UTF-8, or holds '=', a tab or a newline", h.Key)
		}
		w.WriteByte('\t')
		w.WriteString(h.Key)
		if h.Value != nil {
			w.WriteByte('=')
			w.WriteString(base64.StdEncoding.EncodeToString(h.Value))
		}
	}
	w.WriteByte('\n')
	return nil
}

func writeNullableBase64(w *bytes.Buffer, b []byte) {
	if b == nil {
		w.WriteByte('-')
		return
	}
	w.WriteString(base64.StdEncoding.EncodeToString(b))
}

// writeProperties writes p.Properties as a Java properties file readable by its owner only.
func (p *JavaProducerEnv) writeProperties() (string, error) {
	f, err := os.CreateTemp(p.t.TempDir(), "producer-*.properties")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(p.Properties)) {
		b.WriteString(propertiesEscape(k, true))
		b.WriteByte('=')
		b.WriteString(propertiesEscape(p.Properties[k], false))
		b.WriteByte('\n')
	}
	_, err = f.WriteString(b.String())
	return f.Name(), errors.Join(err, f.Close())
}

// propertiesEscape escapes s for java.util.Properties.load, which reads ISO-8859-1: everything
// outside printable ASCII as \uXXXX (UTF-16), and in keys the separators.
func propertiesEscape(s string, key bool) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case key && strings.ContainsRune("=: #!", r), !key && i == 0 && r == ' ':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r > 0x7e:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
