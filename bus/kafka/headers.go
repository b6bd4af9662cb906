package kafka

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/composable-go/composable/bus"
	"github.com/composable-go/composable/persistence"
)

// Header names. The value of a message is the event's data; everything
// else travels in headers. Metadata keys are prefixed with "meta-"; the
// correlation and causation ids and the W3C trace context are also copied
// to their conventional names for tools that look there.
const (
	HeaderEventID        = "event-id"
	HeaderEventType      = "event-type"
	HeaderSchemaVersion  = "schema-version"
	HeaderStreamID       = "stream-id"
	HeaderStreamVersion  = "stream-version"
	HeaderGlobalPosition = "global-position"
	HeaderRecordedAt     = "recorded-at"
	HeaderCorrelationID  = "correlation-id"
	HeaderCausationID    = "causation-id"
	HeaderTraceParent    = "traceparent"
	metaPrefix           = "meta-"

	HeaderDLQError     = "dlq-error"
	HeaderDLQAttempts  = "dlq-attempts"
	HeaderDLQTopic     = "dlq-original-topic"
	HeaderDLQPartition = "dlq-original-partition"
	HeaderDLQOffset    = "dlq-original-offset"
	HeaderDLQGroup     = "dlq-group"
	// HeaderDLQTruncated says what a dead letter left out to fit the
	// producer's size limit.
	HeaderDLQTruncated = "dlq-truncated"
)

// encode turns a bus message into a sarama message.
func encode(m bus.Message) *sarama.ProducerMessage {
	e := m.Event
	h := []sarama.RecordHeader{
		{Key: []byte(HeaderEventID), Value: []byte(e.ID)},
		{Key: []byte(HeaderEventType), Value: []byte(e.Type)},
		{Key: []byte(HeaderSchemaVersion), Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: []byte(HeaderStreamID), Value: []byte(e.StreamID)},
		{Key: []byte(HeaderStreamVersion), Value: []byte(strconv.FormatInt(e.Version, 10))},
		{Key: []byte(HeaderGlobalPosition), Value: []byte(strconv.FormatInt(e.GlobalPosition, 10))},
		{Key: []byte(HeaderRecordedAt), Value: []byte(e.RecordedAt.UTC().Format(time.RFC3339Nano))},
	}
	for k, v := range e.Metadata {
		h = append(h, sarama.RecordHeader{Key: []byte(metaPrefix + k), Value: []byte(v)})
	}
	for _, conv := range []struct{ meta, header string }{
		{persistence.MetadataCorrelationID, HeaderCorrelationID},
		{persistence.MetadataCausationID, HeaderCausationID},
		{"traceparent", HeaderTraceParent},
	} {
		if v, ok := e.Metadata[conv.meta]; ok {
			h = append(h, sarama.RecordHeader{Key: []byte(conv.header), Value: []byte(v)})
		}
	}
	// The record timestamp is left to the producer (now): a relay catching
	// up on old history must not hand retention or the broker's timestamp
	// checks an old time. The event's own time is the recorded-at header.
	return &sarama.ProducerMessage{Topic: m.Topic, Key: sarama.StringEncoder(m.Key), Value: sarama.ByteEncoder(e.Data), Headers: h}
}

// decode turns a consumed message back into a delivery.
func decode(msg *sarama.ConsumerMessage) (bus.Delivery, error) {
	d := bus.Delivery{
		Message: bus.Message{Topic: msg.Topic, Key: string(msg.Key), Event: persistence.RecordedEvent{
			EventData: persistence.EventData{Data: append([]byte{}, msg.Value...)},
		}},
		Partition: msg.Partition, Offset: msg.Offset,
	}
	e := &d.Event
	var dl bus.DeadLetterInfo
	var err error
	for _, rh := range msg.Headers {
		if rh == nil {
			continue
		}
		k, v := string(rh.Key), string(rh.Value)
		switch k {
		case HeaderEventID:
			e.ID = v
		case HeaderEventType:
			e.Type = v
		case HeaderSchemaVersion:
			e.SchemaVersion, err = atoi(k, v, err)
		case HeaderStreamID:
			e.StreamID = v
		case HeaderStreamVersion:
			e.Version, err = atoi64(k, v, err)
		case HeaderGlobalPosition:
			e.GlobalPosition, err = atoi64(k, v, err)
		case HeaderRecordedAt:
			t, perr := time.Parse(time.RFC3339Nano, v)
			if perr != nil && err == nil {
				err = fmt.Errorf("header %s: %w", k, perr)
			}
			e.RecordedAt = t
		case HeaderDLQError:
			dl.Error = v
		case HeaderDLQAttempts:
			dl.Attempts, err = atoi(k, v, err)
		case HeaderDLQTopic:
			dl.Topic = v
		case HeaderDLQPartition:
			var p int64
			p, err = atoi64(k, v, err)
			dl.Partition = int32(p)
		case HeaderDLQOffset:
			dl.Offset, err = atoi64(k, v, err)
		case HeaderDLQGroup:
			dl.Group = v
		case HeaderDLQTruncated:
			dl.Truncated = v
		default:
			if meta, ok := strings.CutPrefix(k, metaPrefix); ok {
				if e.Metadata == nil {
					e.Metadata = map[string]string{}
				}
				e.Metadata[meta] = v
			}
		}
	}
	if dl.Topic != "" {
		d.DeadLetter = &dl
	}
	return d, err
}

// deadLetterMessage is the consumed message, exactly as it was — key,
// value, every header — bound for the dead-letter topic with the failure
// added in dlq-* headers (earlier dlq-* headers, from a message that was
// dead-lettered before, are kept).
//
// A dead letter over maxBytes (the producer's limit: a message just under
// it, plus the dlq-* headers) would be refused for ever; it goes without
// the original's value and without headers other than the event's
// coordinates, each cut to 1 KiB, and says so in dlq-truncated.
func deadLetterMessage(topic string, msg *sarama.ConsumerMessage, info bus.DeadLetterInfo, maxBytes int) *sarama.ProducerMessage {
	pm := fullDeadLetter(topic, msg, info)
	if pm.ByteSize(2) <= maxBytes {
		return pm
	}
	const cut = 1 << 10
	keep := map[string]bool{HeaderEventID: true, HeaderEventType: true, HeaderSchemaVersion: true, HeaderStreamID: true,
		HeaderStreamVersion: true, HeaderGlobalPosition: true, HeaderRecordedAt: true}
	pm = &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder{}}
	if msg.Key != nil {
		pm.Key = sarama.ByteEncoder(truncate(msg.Key, cut))
	}
	for _, h := range msg.Headers {
		if h != nil && keep[string(h.Key)] {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: h.Key, Value: truncate(h.Value, cut)})
		}
	}
	info.Error = string(truncate([]byte(info.Error), cut))
	info.Truncated = fmt.Sprintf("the value (%d bytes) and other headers: the dead letter was over the producer's limit of %d bytes", len(msg.Value), maxBytes)
	pm.Headers = append(pm.Headers, dlqHeaders(info)...)
	return pm
}

// truncate cuts b to at most n bytes.
func truncate(b []byte, n int) []byte { return b[:min(len(b), n)] }

// fullDeadLetter is the consumed message with the dlq-* headers added.
func fullDeadLetter(topic string, msg *sarama.ConsumerMessage, info bus.DeadLetterInfo) *sarama.ProducerMessage {
	pm := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(msg.Value)}
	if msg.Key != nil {
		pm.Key = sarama.ByteEncoder(msg.Key)
	}
	for _, h := range msg.Headers {
		if h != nil {
			pm.Headers = append(pm.Headers, *h)
		}
	}
	pm.Headers = append(pm.Headers, dlqHeaders(info)...)
	return pm
}

func dlqHeaders(info bus.DeadLetterInfo) []sarama.RecordHeader {
	h := []sarama.RecordHeader{
		{Key: []byte(HeaderDLQError), Value: []byte(info.Error)},
		{Key: []byte(HeaderDLQAttempts), Value: []byte(strconv.Itoa(info.Attempts))},
		{Key: []byte(HeaderDLQTopic), Value: []byte(info.Topic)},
		{Key: []byte(HeaderDLQPartition), Value: []byte(strconv.FormatInt(int64(info.Partition), 10))},
		{Key: []byte(HeaderDLQOffset), Value: []byte(strconv.FormatInt(info.Offset, 10))},
		{Key: []byte(HeaderDLQGroup), Value: []byte(info.Group)},
	}
	if info.Truncated != "" {
		h = append(h, sarama.RecordHeader{Key: []byte(HeaderDLQTruncated), Value: []byte(info.Truncated)})
	}
	return h
}

func atoi(k, v string, prev error) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil && prev == nil {
		return n, fmt.Errorf("header %s: %w", k, err)
	}
	return n, prev
}

func atoi64(k, v string, prev error) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && prev == nil {
		return n, fmt.Errorf("header %s: %w", k, err)
	}
	return n, prev
}
