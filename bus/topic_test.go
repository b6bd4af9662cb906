package bus_test

import (
	"strings"
	"testing"

	"github.com/composable-go/composable/bus"
)

func TestLegalTopic(t *testing.T) {
	for name, want := range map[string]bool{
		"events.order": true, "a-b_c.D9": true, strings.Repeat("t", 249): true,
		"": false, ".": false, "..": false, "events.Order Service": false, "events/x": false,
		"événements": false, strings.Repeat("t", 250): false, "a\x00": false,
	} {
		if got := bus.LegalTopic(name); got != want {
			t.Errorf("LegalTopic(%.20q) = %v, want %v", name, got, want)
		}
	}
}

func TestSanitizeTopic(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"events.order", "events.order"},
		{"events.Order Service", "events.Order_Service"},
		{"ventes-été", "ventes-_t_"},
		{strings.Repeat("t", 30), strings.Repeat("t", 20)},
		{strings.Repeat("é", 30), strings.Repeat("_", 20)},
		{"", "_"}, {".", "_."}, {"..", "_.."}, // names Kafka refuses
	} {
		got := bus.SanitizeTopic(tt.in, 20)
		if got != tt.want || !bus.LegalTopic(got) {
			t.Errorf("SanitizeTopic(%q, 20) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
