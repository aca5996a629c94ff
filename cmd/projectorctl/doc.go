// Command projectorctl administers Projector projections while their
// replicas run: status, replay (rebuild the read model by resetting the
// consumer group's offsets), pause and resume, parked streams, and the
// stream catalog.
//
//	projectorctl status billing [-o json]
//	projectorctl rebuild billing [--wait] [--grace 10m] [--keep] [--dry-run] [--yes]
//	projectorctl rebuild billing --status | --abort | --drop VERSION
//	projectorctl replay billing [--to-time 2026-03-01T00:00:00+01:00 | --to-offsets FILE] [--dry-run] [--yes] [--wait]
//	projectorctl replay billing --resume | --abort
//	projectorctl pause billing --reason "maintenance" ; projectorctl resume billing
//	projectorctl parked list billing ; projectorctl parked retry|skip billing STREAM --reason "..." [--force | --drop]
//	projectorctl catalog rebuild [-o json]
//	projectorctl completion bash|zsh|fish|powershell
//
// Every connection flag falls back to an environment variable, the same the
// workers read: PROJECTOR_KAFKA_BROKERS, PROJECTOR_TOPIC, PROJECTOR_GROUP,
// PROJECTOR_KAFKA_SASL_MECHANISM, PROJECTOR_KAFKA_USERNAME,
// PROJECTOR_KAFKA_PASSWORD, PROJECTOR_KAFKA_TLS, PROJECTOR_KAFKA_TLS_CA_FILE,
// PROJECTOR_REDIS_URL, PROJECTOR_REDIS_USERNAME, PROJECTOR_REDIS_PASSWORD,
// PROJECTOR_REDIS_TLS_CA_FILE, PROJECTOR_REDIS_NAMESPACE.
//
// Text output shows data from Kafka and Redis (stream and event IDs, reasons,
// errors) with control characters, bidi controls and bytes that are not
// UTF-8 written as Go escapes (\x1b, \n, \u202e, \xff), so that no value
// can drive the terminal or forge a line; -o json is plain JSON.
//
// Exit codes:
//
//	0  done
//	1  failed (a server error, a bad response)
//	2  usage: wrong flags or arguments
//	3  refused: the group did not empty in time, a replay is already in
//	   progress, a destructive step was not confirmed
//	4  not found: no such parked stream
//	5  catalog rebuild found streams off their murmur2 partition (listed)
//
// A retry or skip of a parked stream is recorded beside it; the replica
// owning the stream's partition carries it out (re-reading the held
// records from Kafka) and only then unparks it, so parked list shows the
// request until it is done. A skip of a gap is checked against the
// stream's records in Kafka: --drop passes over the parked record instead,
// --force skips anyway.
//
// A rebuild (the default way to rebuild a read model) builds the next
// version, billing@v2, beside the live one with a consumer group of its own;
// the replicas (kafkarunner.VersionedRunner) switch the live pointer to it
// in one Redis write once it has caught up and nothing is newly parked in
// it, and delete the replaced version after --grace. Every other command
// acts on the live version unless given a version ("billing@v2").
//
// A replay rebuilds in place, coordinated through the projection's control
// record in Redis: one script pauses the replicas, raises the projection's
// epoch (older cursors and fences stop counting; parked streams are cleared
// and listed) and requests the reset of the read model, so that no replica
// writes to the model before it is reset; the command waits for the group to
// be empty (naming the members still present when it times out), resets the
// offsets and resumes the replicas, one of which resets the read model under
// a claim that fences its deletes; they rebuild. Each phase is recorded
// first, so an interrupted replay is resumed with --resume or given up with
// --abort, never left half done silently.
package main
