// The Go side of openim-wire's golden tests (tests/golden.rs): encodes and decodes OpenIM's
// msg-gateway envelopes with Go's own encoding/gob, encoding/json and compress/gzip, so the Rust
// codec is checked against Go itself rather than against our reading of it. Standard library
// only. The structs mirror OpenIM's (internal/msggateway/message_handler.go) and the Go SDK's
// (internal/interaction/ws_resp_asyn.go); none of their code is copied.
//
// Usage: gobjson req|resp, then one command per stdin line, one answer per stdout line:
//
//	enc <fields>                 -> <gob> <json> <gzip(gob)> <gzip(json)>
//	encsdk <fields>              -> <gob> of the SDK twin struct (declared later: another type id)
//	dec gob|json raw|gz <frame>  -> ok <fields> | err <message>
//
// Fields, in struct order: integers in decimal, strings as hex ("-" = empty), data as hex,
// "nil" or "empty". Frames are hex ("-" = empty), messages hex.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

type Req struct {
	ReqIdentifier int32  `json:"reqIdentifier"`
	Token         string `json:"token"`
	SendID        string `json:"sendID"`
	OperationID   string `json:"operationID"`
	MsgIncr       string `json:"msgIncr"`
	Data          []byte `json:"data"`
}

type Resp struct {
	ReqIdentifier int32  `json:"reqIdentifier"`
	MsgIncr       string `json:"msgIncr"`
	OperationID   string `json:"operationID"`
	ErrCode       int    `json:"errCode"`
	ErrMsg        string `json:"errMsg"`
	Data          []byte `json:"data"`
}

type GeneralWsReq struct {
	ReqIdentifier int
	Token         string
	SendID        string
	OperationID   string
	MsgIncr       string
	Data          []byte
}

type GeneralWsResp struct {
	ReqIdentifier int
	ErrCode       int
	ErrMsg        string
	MsgIncr       string
	OperationID   string
	Data          []byte
}

func str(tok string) string {
	if tok == "-" {
		return ""
	}
	b, err := hex.DecodeString(tok)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func data(tok string) []byte {
	switch tok {
	case "nil":
		return nil
	case "empty":
		return []byte{}
	}
	b, err := hex.DecodeString(tok)
	if err != nil {
		panic(err)
	}
	return b
}

func num(tok string) int64 {
	n, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}

func hs(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func hd(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) == 0 {
		return "empty"
	}
	return hex.EncodeToString(b)
}

func encGob(v any) []byte {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func encJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func gz(raw []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(raw)
	w.Close()
	return b.Bytes()
}

func gunzip(frame []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(frame))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func main() {
	isReq := os.Args[1] == "req"
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch f[0] {
		case "enc":
			var v any
			if isReq {
				v = Req{int32(num(f[1])), str(f[2]), str(f[3]), str(f[4]), str(f[5]), data(f[6])}
			} else {
				v = Resp{int32(num(f[1])), str(f[2]), str(f[3]), int(num(f[4])), str(f[5]), data(f[6])}
			}
			g, j := encGob(v), encJSON(v)
			fmt.Fprintf(out, "%x %x %x %x\n", g, j, gz(g), gz(j))
		case "encsdk":
			var v any
			if isReq {
				v = GeneralWsReq{int(num(f[1])), str(f[2]), str(f[3]), str(f[4]), str(f[5]), data(f[6])}
			} else {
				v = GeneralWsResp{int(num(f[1])), int(num(f[4])), str(f[5]), str(f[2]), str(f[3]), data(f[6])}
			}
			fmt.Fprintf(out, "%x\n", encGob(v))
		case "dec":
			frame, err := []byte(str(f[3])), error(nil)
			if err == nil && f[2] == "gz" {
				frame, err = gunzip(frame)
			}
			if err == nil {
				if isReq {
					var r Req
					if err = decode(f[1], frame, &r); err == nil {
						fmt.Fprintf(out, "ok %d %s %s %s %s %s\n", r.ReqIdentifier, hs(r.Token), hs(r.SendID), hs(r.OperationID), hs(r.MsgIncr), hd(r.Data))
					}
				} else {
					var r Resp
					if err = decode(f[1], frame, &r); err == nil {
						fmt.Fprintf(out, "ok %d %s %s %d %s %s\n", r.ReqIdentifier, hs(r.MsgIncr), hs(r.OperationID), r.ErrCode, hs(r.ErrMsg), hd(r.Data))
					}
				}
			}
			if err != nil {
				fmt.Fprintf(out, "err %x\n", err.Error())
			}
		}
		out.Flush()
	}
}

func decode(enc string, frame []byte, v any) error {
	if enc == "gob" {
		return gob.NewDecoder(bytes.NewReader(frame)).Decode(v)
	}
	return json.Unmarshal(frame, v)
}
