package redischeckpoint

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientConfig says how to reach Redis. Zero fields mean their documented
// default; values given here override those of URL.
type ClientConfig struct {
	// URL is a redis:// or rediss:// (TLS) URL, as in
	// "rediss://user:pass@host:6380/0". Either URL or Addrs.
	URL string
	// Addrs are host:port addresses: one for a single server, several
	// seeds for a Cluster, Sentinel addresses with MasterName.
	Addrs []string
	// MasterName selects Sentinel mode.
	MasterName string
	// Cluster selects a Cluster client even with a single seed address.
	Cluster bool

	// Username and Password authenticate (Redis 6 ACL user; Password alone
	// for the default user).
	Username string
	Password string
	DB       int
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// (MasterName), when they require it: go-redis sends Username and
	// Password only to the master and replicas. TLS applies to both.
	SentinelUsername string
	SentinelPassword string

	// TLS enables TLS with the system roots, or with CAFile when set.
	// A rediss:// URL enables it too.
	TLS bool
	// CAFile is a PEM file of the CA that signed the server's certificate.
	CAFile string
	// CertFile and KeyFile are a client certificate, for servers that
	// require one (tls-auth-clients).
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string

	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each command. Default 3s.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
}

// NewClient builds a client from cfg. It does not connect: the first
// command does, and fails within DialTimeout when the server is unreachable
// and at once on a wrong password.
func NewClient(cfg ClientConfig) (redis.UniversalClient, error) {
	opts, err := cfg.universalOptions()
	if err != nil {
		return nil, err
	}
	if cfg.Cluster {
		return redis.NewClusterClient(opts.Cluster()), nil
	}
	return redis.NewUniversalClient(opts), nil
}

func (cfg ClientConfig) universalOptions() (*redis.UniversalOptions, error) {
	var errs []error
	opts := &redis.UniversalOptions{}
	switch {
	case cfg.URL != "" && len(cfg.Addrs) > 0:
		errs = append(errs, errors.New("redischeckpoint: ClientConfig has both URL and Addrs; give one"))
	case cfg.URL != "":
		u, err := redis.ParseURL(cfg.URL)
		if err != nil {
			// url.Parse's errors quote the whole URL, password included.
			errs = append(errs, fmt.Errorf("redischeckpoint: Redis URL %s: %s", redactURL(cfg.URL), redactIn(err.Error(), cfg.URL)))
			break
		}
		opts.Addrs = []string{u.Addr}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
	case len(cfg.Addrs) > 0:
		opts.Addrs = cfg.Addrs
	default:
		errs = append(errs, errors.New("redischeckpoint: ClientConfig needs URL or Addrs"))
	}
	opts.MasterName = cfg.MasterName
	opts.SentinelUsername, opts.SentinelPassword = cfg.SentinelUsername, cfg.SentinelPassword
	if cfg.Username != "" {
		opts.Username = cfg.Username
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	if cfg.DB != 0 {
		opts.DB = cfg.DB
	}
	if cfg.TLS || cfg.CAFile != "" || cfg.CertFile != "" || opts.TLSConfig != nil {
		tlsCfg, err := cfg.tlsConfig(opts.TLSConfig)
		if err != nil {
			errs = append(errs, err)
		}
		opts.TLSConfig = tlsCfg
	}
	opts.DialTimeout = orDefault(cfg.DialTimeout, 5*time.Second)
	opts.ReadTimeout = orDefault(cfg.ReadTimeout, 3*time.Second)
	opts.WriteTimeout = orDefault(cfg.WriteTimeout, 3*time.Second)
	opts.PoolTimeout = opts.ReadTimeout + time.Second
	return opts, errors.Join(errs...)
}

func (cfg ClientConfig) tlsConfig(base *tls.Config) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		t = base.Clone()
		if t.MinVersion == 0 {
			t.MinVersion = tls.VersionTLS12
		}
	}
	if cfg.ServerName != "" {
		t.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redischeckpoint: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redischeckpoint: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("redischeckpoint: give both CertFile and KeyFile, or neither")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redischeckpoint: client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// redactURL hides the password of a URL for error messages.
// redactIn replaces, in msg, raw and the password raw carries with their
// redacted forms.
func redactIn(msg, raw string) string {
	msg = strings.ReplaceAll(msg, raw, redactURL(raw))
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pass, hasPass := strings.Cut(rest[:at], ":"); hasPass && pass != "" {
				msg = strings.ReplaceAll(msg, pass, "xxxxx")
			}
		}
	}
	return msg
}

func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(unparsable URL)"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo := rest[:at]
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
		}
	}
	return raw
}
