// Command kafkaready waits until a Kafka cluster answers metadata requests and prints what it
// announces. scripts/test.sh and scripts/infra.sh run it while the broker boots.
//
//	kafkaready -seeds 127.0.0.1:19092 -timeout 90s
//
// With -sasl it connects over TLS trusting only -ca-file and authenticates with SCRAM
// (SCRAM-SHA-256 or SCRAM-SHA-512); the password is read from the environment variable named
// by -password-env, so that it never appears on a command line:
//
//	kafkaready -seeds 127.0.0.1:19094 -ca-file ca.pem -sasl SCRAM-SHA-512 -user projector -password-env PW
//
// With -cert-file and -key-file it shows a client certificate (mutual TLS); with -sasl
// OAUTHBEARER it sends the bearer token in -token-file:
//
//	kafkaready -seeds 127.0.0.1:19095 -ca-file ca.pem -cert-file client.pem -key-file client.key
//	kafkaready -seeds 127.0.0.1:19096 -ca-file ca.pem -sasl OAUTHBEARER -token-file probe.jwt
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/projector-dev/projector/internal/testenv/kafkaprobe"
)

func main() {
	seeds := flag.String("seeds", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to wait")
	caFile := flag.String("ca-file", "", "connect with TLS, trusting only the CA certificates in this PEM file")
	certFile := flag.String("cert-file", "", "PEM file of a client certificate (mutual TLS; needs -ca-file and -key-file)")
	keyFile := flag.String("key-file", "", "PEM file of the client certificate's key")
	mech := flag.String("sasl", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (needs -user and -password-env), or OAUTHBEARER (needs -token-file)")
	user := flag.String("user", "", "SCRAM user")
	passwordEnv := flag.String("password-env", "", "environment variable holding the SCRAM password")
	tokenFile := flag.String("token-file", "", "file holding the OAUTHBEARER token")
	flag.Parse()

	opts, err := secureOpts(*caFile, *certFile, *keyFile, *mech, *user, *passwordEnv, *tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	info, err := kafkaprobe.Wait(ctx, strings.Split(*seeds, ","), opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %v\n", err)
		os.Exit(1)
	}
	how := ""
	switch {
	case *mech != "":
		how = " (" + *mech + " over TLS)"
	case *certFile != "":
		how = " (mutual TLS)"
	case *caFile != "":
		how = " (TLS)"
	}
	fmt.Printf("kafkaready: %s%s answers after %s: %s\n", *seeds, how, time.Since(start).Round(100*time.Millisecond), info)
}

func secureOpts(caFile, certFile, keyFile, mech, user, passwordEnv, tokenFile string) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if (certFile != "" || keyFile != "") && (caFile == "" || certFile == "" || keyFile == "") {
		return nil, fmt.Errorf("-cert-file and -key-file go together, with -ca-file")
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if mech == "" {
		return opts, nil
	}
	if mech == "OAUTHBEARER" {
		if tokenFile == "" {
			return nil, fmt.Errorf("-sasl OAUTHBEARER needs -token-file")
		}
		// Read at each authentication; the token never appears in an error.
		return append(opts, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		}))), nil
	}
	if user == "" || passwordEnv == "" || os.Getenv(passwordEnv) == "" {
		return nil, fmt.Errorf("-sasl %s needs -user and -password-env naming a set variable", mech)
	}
	auth := scram.Auth{User: user, Pass: os.Getenv(passwordEnv)}
	var m sasl.Mechanism
	switch mech {
	case "PLAIN":
		m = plain.Auth{User: user, Pass: os.Getenv(passwordEnv)}.AsMechanism()
	case "SCRAM-SHA-256":
		m = auth.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		m = auth.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("unknown -sasl %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", mech)
	}
	return append(opts, kgo.SASL(m)), nil
}
