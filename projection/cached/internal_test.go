package cached

import "testing"

func TestHit(t *testing.T) {
	for _, tt := range []struct {
		entry, epoch, value string
		hit                 bool
	}{
		{`p0:12:{"total":42}`, "0", `{"total":42}`, true},
		{`p3:7:a:b:c`, "3", `a:b:c`, true},
		{`p3:7:`, "3", ``, true},
		{`p2:7:x`, "3", ``, false},          // another epoch
		{`t12`, "0", ``, false},             // a tombstone
		{`v0:{"total":42}`, "0", ``, false}, // the previous release's format
		{`p0:x:{}`, "0", ``, false},         // no position
		{`p0`, "0", ``, false},
	} {
		v, ok := hit(tt.entry, tt.epoch)
		if ok != tt.hit || string(v) != tt.value {
			t.Errorf("hit(%q, %q) = %q, %v; want %q, %v", tt.entry, tt.epoch, v, ok, tt.value, tt.hit)
		}
	}
}
