package v1

import "encoding/json"

// ProtoMessage is protobuf-go's protoreflect.ProtoMessage plus the methods
// of the v1 API (protoiface.MessageV1).
type ProtoMessage interface {
	ProtoReflect() protoreflectMessage
	Reset()
	String() string
	ProtoMessage()
}

// Marshal encodes m the way protobuf-go's gRPC codec does: through
// ProtoReflect. Not part of the real package: it stands in for the codec,
// with JSON as the wire format.
func Marshal(m ProtoMessage) ([]byte, error) {
	if m.ProtoReflect().info() == nil {
		panic("message without MessageInfo")
	}
	return json.Marshal(m)
}

// Unmarshal decodes b into m the way proto.Unmarshal does: Reset, then
// through ProtoReflect. Not part of the real package.
func Unmarshal(b []byte, m ProtoMessage) error {
	m.Reset()
	if m.ProtoReflect().info() == nil {
		panic("message without MessageInfo")
	}
	return json.Unmarshal(b, m)
}

func messageString(m interface{}) string {
	b, err := json.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
