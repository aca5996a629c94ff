package kafkastore

// SetAppendHook sets a function called at each step of a guarded append
// ("reserved", "produced", "recorded", "committed", "registered").
func SetAppendHook(f func(step, streamID string)) { appendHook = f }
