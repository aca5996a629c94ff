package kafkastore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/projector-dev/projector/appendguard"
)

// Config configures a [Store]. Zero fields mean their documented default.
type Config struct {
	// Seeds are the brokers to bootstrap from (required).
	Seeds []string
	// Topic is the event topic (required).
	Topic string
	// CatalogTopic is the compacted stream catalog. Default Topic+".catalog".
	CatalogTopic string

	// Partitions is the event topic's partition count: used when creating
	// it, and checked against an existing topic (a different count would
	// move streams to other partitions). Default 12; the catalog gets the
	// same count.
	Partitions int32
	// ReplicationFactor for created topics. Default -1: the broker's
	// default.replication.factor.
	ReplicationFactor int16
	// AllowFiniteRetention accepts an existing event topic whose
	// retention.ms is not -1. Events that expire cannot be replayed, so
	// this is off by default.
	AllowFiniteRetention bool
	// DontCreateTopics makes a missing topic an error instead of creating
	// it.
	DontCreateTopics bool

	// ReadConcurrency is how many ReadStream calls can read at once, each
	// with a pooled consumer. Default 4.
	ReadConcurrency int
	// ReadBatchBytes bounds what one ReadStream fetches at a time, and so
	// its memory: about twice this times the compression ratio of the
	// topic's batches (decompressed records are what stay in memory).
	// Default 256 KiB.
	ReadBatchBytes int32

	// Guard makes Append's expected versions hold across writer
	// processes: every Store appending to the topic's streams, in any
	// process, shares one registry (redischeckpoint.AppendRegistry on
	// Redis; appendguard.NewMemory for writers inside one process). See
	// Writers in the package documentation. Append fails with
	// [ErrNoGuard] without it, unless SingleWriter is set.
	Guard appendguard.Registry
	// SingleWriter declares this Store the only writer of the topic's
	// streams in every process, and lets Append run without Guard:
	// expected versions are then checked inside this Store only, and a
	// second Store appending to the same stream can fork it (two events
	// with one sequence). Leave it off with more than one writer process.
	SingleWriter bool
	// WriterID is the transactional ID of the producer that writes the
	// appends under Guard. Every live Store needs its own: two Stores with
	// one ID fence each other. Default: "projector-writer.<topic>." and a
	// random suffix. A stable ID per pod (its name) lets a restarted
	// writer abort its predecessor's unfinished transaction at once,
	// instead of after AppendLease.
	WriterID string
	// AppendLease bounds how long one append may hold its stream under
	// Guard: past it, the next writer of the stream fences the append's
	// producer and completes or drops what it wrote. It is also the
	// transaction timeout, after which Kafka aborts the transaction of a
	// writer that died mid-append; consumers reading committed records of
	// that partition (the runner) wait that long at most. Default 10s.
	AppendLease time.Duration

	// ClientOpts pass through to every franz-go client the store makes
	// (SASL, TLS, timeouts, kotel hooks). See [Security].
	ClientOpts []kgo.Opt
	// Propagator writes the W3C trace context of the appending call into
	// record headers. Default: the global OpenTelemetry propagator if one
	// is set, else W3C trace context.
	Propagator propagation.TextMapPropagator
	// TracerProvider, when set, traces appends: a span per Append call
	// and, through franz-go's kotel plugin, a publish span per record
	// whose context travels in the record's headers. MeterProvider, when
	// set, gets kotel's client metrics.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Logger receives warnings. Default: discard.
	Logger *slog.Logger
	// RequestTimeout bounds admin requests and catalog reads. Default 30s.
	RequestTimeout time.Duration
}

// DefaultPartitions is the default of [Config.Partitions].
const DefaultPartitions = 12

func (c *Config) setDefaults() {
	if c.CatalogTopic == "" {
		c.CatalogTopic = c.Topic + ".catalog"
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.ReadConcurrency == 0 {
		c.ReadConcurrency = 4
	}
	if c.ReadBatchBytes == 0 {
		c.ReadBatchBytes = 256 << 10
	}
	if c.Propagator == nil {
		c.Propagator = otel.GetTextMapPropagator()
		if len(c.Propagator.Fields()) == 0 {
			c.Propagator = propagation.TraceContext{}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.AppendLease == 0 {
		c.AppendLease = DefaultAppendLease
	}
	if c.WriterID == "" {
		c.WriterID = "projector-writer." + c.Topic + "." + appendguard.NewToken()
	}
}

// DefaultAppendLease is the default of [Config.AppendLease].
const DefaultAppendLease = 10 * time.Second

// Validate reports every problem of c, joined.
func (c Config) Validate() error {
	var errs []error
	if len(c.Seeds) == 0 {
		errs = append(errs, errors.New("kafkastore: Config.Seeds is required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("kafkastore: Config.Topic is required"))
	}
	if c.Topic != "" && c.CatalogTopic == c.Topic {
		errs = append(errs, errors.New("kafkastore: Config.CatalogTopic must differ from Topic"))
	}
	if c.Partitions < 0 {
		errs = append(errs, fmt.Errorf("kafkastore: Config.Partitions %d is negative", c.Partitions))
	}
	if c.ReplicationFactor < -1 {
		errs = append(errs, fmt.Errorf("kafkastore: Config.ReplicationFactor %d is below -1", c.ReplicationFactor))
	}
	if c.ReadConcurrency < 0 {
		errs = append(errs, fmt.Errorf("kafkastore: Config.ReadConcurrency %d is negative", c.ReadConcurrency))
	}
	if c.AppendLease < 0 || (c.AppendLease > 0 && c.AppendLease < time.Second) {
		errs = append(errs, fmt.Errorf("kafkastore: Config.AppendLease %v is below 1s", c.AppendLease))
	}
	if c.ReadBatchBytes < 0 {
		errs = append(errs, fmt.Errorf("kafkastore: Config.ReadBatchBytes %d is negative", c.ReadBatchBytes))
	}
	return errors.Join(errs...)
}

// Security describes how to authenticate to and encrypt the connection to
// Kafka.
type Security struct {
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"
	// (with Username and Password) or "OAUTHBEARER" (with OAuthTokenFile).
	SASLMechanism string
	Username      string
	Password      string
	// OAuthTokenFile holds the bearer token for SASL OAUTHBEARER. It is
	// read again on every authentication and re-authentication (brokers
	// with connections.max.reauth.ms, or a token's expiry, ask for one),
	// so whatever rotates it (a projected service-account token, a
	// sidecar) is picked up without a restart. See [OAuthTokenFile].
	OAuthTokenFile string

	// TLS enables TLS with the system roots, or CAFile's when set.
	TLS      bool
	CAFile   string
	CertFile string // client certificate, for mutual TLS
	KeyFile  string
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string
	// TLSConfig, when set, is used as is (and CAFile etc. are ignored).
	TLSConfig *tls.Config
}

// Opts returns the franz-go options for s, or every problem joined.
func (s Security) Opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	var errs []error
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()))
	case "OAUTHBEARER":
		switch {
		case s.OAuthTokenFile == "":
			errs = append(errs, errors.New("kafkastore: SASL OAUTHBEARER needs OAuthTokenFile"))
		case s.Username != "" || s.Password != "":
			errs = append(errs, errors.New("kafkastore: SASL OAUTHBEARER takes its token from OAuthTokenFile, not a username or password"))
		default:
			// Fail fast on a file that cannot be read now; later reads
			// happen at each (re-)authentication.
			if _, err := readTokenFile(s.OAuthTokenFile); err != nil {
				errs = append(errs, err)
			} else {
				opts = append(opts, kgo.SASL(oauth.Oauth(OAuthTokenFile(s.OAuthTokenFile))))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("kafkastore: SASL mechanism %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER", s.SASLMechanism))
	}
	if s.SASLMechanism != "" && !strings.EqualFold(s.SASLMechanism, "OAUTHBEARER") && s.Username == "" {
		errs = append(errs, fmt.Errorf("kafkastore: SASL %s needs a username", s.SASLMechanism))
	}
	if s.OAuthTokenFile != "" && !strings.EqualFold(s.SASLMechanism, "OAUTHBEARER") {
		errs = append(errs, fmt.Errorf("kafkastore: OAuthTokenFile is for SASL OAUTHBEARER, not %q", s.SASLMechanism))
	}
	if s.TLS || s.TLSConfig != nil || s.CAFile != "" || s.CertFile != "" {
		cfg, err := s.tlsConfig()
		if err != nil {
			errs = append(errs, err)
		} else {
			opts = append(opts, kgo.DialTLSConfig(cfg))
		}
	}
	return opts, errors.Join(errs...)
}

func (s Security) tlsConfig() (*tls.Config, error) {
	if s.TLSConfig != nil {
		return s.TLSConfig.Clone(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafkastore: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafkastore: CA file %s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return nil, errors.New("kafkastore: give both CertFile and KeyFile, or neither")
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafkastore: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// OAuthTokenFile returns the token callback of franz-go's OAUTHBEARER
// mechanism (oauth.Oauth) that reads the bearer token from path on every
// call, that is on every authentication and re-authentication of every
// broker connection, trimming surrounding white space. A file that cannot
// be read or holds only white space is an error naming the file; the
// token itself never appears in an error.
func OAuthTokenFile(path string) func(context.Context) (oauth.Auth, error) {
	return func(context.Context) (oauth.Auth, error) {
		tok, err := readTokenFile(path)
		if err != nil {
			return oauth.Auth{}, err
		}
		return oauth.Auth{Token: tok}, nil
	}
}

// maxTokenFile bounds what readTokenFile reads: JWTs are a few KiB.
const maxTokenFile = 1 << 20

func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		// An *fs.PathError: the operation, the path and the cause.
		return "", fmt.Errorf("kafkastore: OAUTHBEARER token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	switch {
	case err != nil:
		return "", fmt.Errorf("kafkastore: OAUTHBEARER token file: %w", err)
	case len(b) > maxTokenFile:
		return "", fmt.Errorf("kafkastore: OAUTHBEARER token file %s is larger than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("kafkastore: OAUTHBEARER token file %s is empty", path)
	}
	return tok, nil
}
