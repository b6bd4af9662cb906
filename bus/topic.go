package bus

import (
	"strings"
	"unicode/utf8"
)

// LegalTopic reports whether name is a topic name Kafka accepts — the
// strictest of the buses: 1 to 249 of the characters a-z, A-Z, 0-9, '.',
// '_' and '-', and not "." or "..".
func LegalTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	return legalChars(name)
}

// SanitizeTopic maps name to the characters LegalTopic takes — each other
// character becomes '_' — and cuts it to at most max bytes; "", "." and
// "..", which Kafka refuses, get a leading '_'.
func SanitizeTopic(name string, max int) string {
	if name == "" || name == "." || name == ".." {
		return "_" + name // names Kafka reserves or refuses
	}
	if legalChars(name) && len(name) <= max {
		return name
	}
	var b strings.Builder
	for _, r := range name {
		if r < utf8.RuneSelf && topicChar(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	return out[:min(len(out), max)] // all ASCII now: any cut is a rune boundary
}

func legalChars(name string) bool {
	for i := 0; i < len(name); i++ {
		if !topicChar(name[i]) {
			return false
		}
	}
	return true
}

func topicChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}
