package v1

import "encoding/json"

// ProtoMessage is gogo-protobuf's proto.Message.
type ProtoMessage interface {
	Reset()
	String() string
	ProtoMessage()
}

type newMarshaler interface {
	XXX_Size() int
	Marshal() ([]byte, error)
}

type newUnmarshaler interface {
	XXX_Unmarshal([]byte) error
}

// Marshal encodes m the way gogo's gRPC codec does: through the generated
// methods. Not part of the real package: it stands in for the codec, with
// JSON as the wire format.
func Marshal(m ProtoMessage) ([]byte, error) {
	if nm, ok := m.(newMarshaler); ok {
		_ = nm.XXX_Size()
		return nm.Marshal()
	}
	return json.Marshal(m)
}

// Unmarshal decodes b into m the way gogo's proto.Unmarshal does: Reset,
// then the generated XXX_Unmarshal. Not part of the real package.
func Unmarshal(b []byte, m ProtoMessage) error {
	m.Reset()
	if u, ok := m.(newUnmarshaler); ok {
		return u.XXX_Unmarshal(b)
	}
	return json.Unmarshal(b, m)
}

func wireMarshal(m interface{}) ([]byte, error) { return json.Marshal(m) }

func wireUnmarshal(b []byte, m interface{}) error { return json.Unmarshal(b, m) }

func messageString(m interface{}) string {
	b, err := json.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
