// invoke-client calls a sidecar's internal gRPC port the way a Go daprd does: the dial option
// is GRPCDialOptionMTLSUnknownTrustDomain(ns, appID) (go-spiffe MTLSClientCredentials; the
// server's SPIFFE ID path must be /ns/<ns>/<appID>, any trust domain). LIGHT build: SVID from
// one newRequestFn-style request, dial option copied into internal/interop. FULL build
// (-tags daprfull): Dapr's own pkg/security provider and handler. It sends
// InternalInvokeRequest{ver: V1, metadata, message: InvokeRequest{method, data: Any{value:
// body}, content_type, http_extension{verb, querystring}}} with CallLocal, or with
// CallLocalStream (-stream, 2 KiB chunks as daprd), and prints the response as JSON.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1pb "github.com/dapr/dapr/pkg/proto/internals/v1"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/pysentry/interop/internal/identity"
	"github.com/pysentry/interop/internal/interop"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ",") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type result struct {
	RPC         string              `json:"rpc"`
	Build       string              `json:"build"`
	SelfID      string              `json:"self_spiffe_id"`
	PeerID      string              `json:"peer_spiffe_id"`
	StatusCode  int32               `json:"status_code"`
	StatusMsg   string              `json:"status_message"`
	Headers     map[string][]string `json:"headers"`
	Trailers    map[string][]string `json:"trailers"`
	ContentType string              `json:"content_type"`
	Body        string              `json:"body"`
	BodyLen     int                 `json:"body_len"`
	Chunks      int                 `json:"chunks"`
}

func main() {
	interop.TakeStdout()
	var sec interop.SecurityFlags
	fs := flag.NewFlagSet("invoke-client", flag.ExitOnError)
	sec.Register(fs, "self-app-id")
	address := fs.String("address", "", "host:port of the callee's internal gRPC server")
	target := fs.String("app-id", "", "callee app ID (authorized: SPIFFE path /ns/<target-namespace>/<app-id>)")
	targetNS := fs.String("target-namespace", "default", "callee namespace")
	method := fs.String("method", "echo", "InvokeRequest.method")
	body := fs.String("body", "", "request body")
	bodySize := fs.Int("body-size", 0, "append this many 'x' bytes to the body")
	contentType := fs.String("content-type", "text/plain", "InvokeRequest.content_type")
	verb := fs.String("verb", "POST", "HTTPExtension verb name")
	query := fs.String("querystring", "", "HTTPExtension.querystring")
	stream := fs.Bool("stream", false, "use CallLocalStream instead of CallLocal")
	timeout := fs.Duration("timeout", 20*time.Second, "overall timeout")
	var headers headerFlags
	fs.Var(&headers, "header", "metadata header k=v (repeatable)")
	_ = fs.Parse(os.Args[1:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	id, _, err := identity.Start(ctx, &sec, "", *timeout)
	if err != nil {
		interop.Fail("identity", err)
	}
	conn, err := grpc.NewClient(*address,
		id.GRPCDialOptionMTLSUnknownTrustDomain(*targetNS, *target),
		grpc.WithDefaultServiceConfig(`{"loadBalancingPolicy":"round_robin"}`),
	)
	if err != nil {
		interop.Fail("dial", err)
	}
	defer conn.Close()

	verbValue, ok := commonv1pb.HTTPExtension_Verb_value[*verb]
	if !ok {
		interop.Fail("flags", fmt.Errorf("unknown -verb %q", *verb))
	}
	data := []byte(*body + strings.Repeat("x", *bodySize))
	md := map[string][]string{
		// What daprd's directMessaging stamps (pkg/messaging/direct_messaging.go).
		"destination-app-id":    {*target},
		"dapr-caller-namespace": {interop.CurrentNamespace()},
		"dapr-caller-app-id":    {sec.AppID},
		"dapr-callee-app-id":    {*target},
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, "=")
		md[strings.ToLower(k)] = append(md[strings.ToLower(k)], v)
	}
	req := &internalv1pb.InternalInvokeRequest{
		Ver:      internalv1pb.APIVersion_V1,
		Metadata: interop.MapToHeaders(md),
		Message: &commonv1pb.InvokeRequest{
			Method:      *method,
			Data:        &anypb.Any{Value: data},
			ContentType: *contentType,
			HttpExtension: &commonv1pb.HTTPExtension{
				Verb:        commonv1pb.HTTPExtension_Verb(verbValue),
				Querystring: *query,
			},
		},
	}
	client := internalv1pb.NewServiceInvocationClient(conn)
	var p peer.Peer
	out := result{SelfID: id.ID().String(), Build: identity.Flavor}
	callCtx := metadata.AppendToOutgoingContext(ctx, "dapr-app-id", *target)
	var resp *internalv1pb.InternalInvokeResponse
	var respBody []byte
	if *stream {
		out.RPC = "CallLocalStream"
		resp, respBody, out.Chunks, err = callStream(callCtx, client, req, data, &p)
	} else {
		out.RPC = "CallLocal"
		resp, err = client.CallLocal(callCtx, req, grpc.Peer(&p))
		respBody = resp.GetMessage().GetData().GetValue()
	}
	if pid, ok := grpccredentials.PeerIDFromPeer(&p); ok {
		out.PeerID = pid.String()
	}
	if err != nil {
		interop.Fail("invoke", err)
	}
	out.StatusCode = resp.GetStatus().GetCode()
	out.StatusMsg = resp.GetStatus().GetMessage()
	out.Headers = interop.HeadersToMap(resp.GetHeaders())
	out.Trailers = interop.HeadersToMap(resp.GetTrailers())
	out.ContentType = resp.GetMessage().GetContentType()
	out.Body = string(respBody)
	out.BodyLen = len(respBody)
	interop.Emit(out)
}

// callStream mirrors daprd's invokeRemoteStream: the leading message carries the request
// without its data plus the first chunk; seq counts from 0; CloseSend when done.
func callStream(ctx context.Context, client internalv1pb.ServiceInvocationClient, req *internalv1pb.InternalInvokeRequest, data []byte, p *peer.Peer) (*internalv1pb.InternalInvokeResponse, []byte, int, error) {
	st, err := client.CallLocalStream(ctx, grpc.Peer(p))
	if err != nil {
		return nil, nil, 0, err
	}
	req.Message.Data = nil
	var seq uint64
	for i := 0; i == 0 || i < len(data); i += interop.StreamChunk {
		msg := &internalv1pb.InternalInvokeRequestStream{}
		if i == 0 {
			msg.Request = req
		}
		if len(data) > 0 {
			end := min(i+interop.StreamChunk, len(data))
			msg.Payload = &commonv1pb.StreamPayload{Data: data[i:end], Seq: seq}
			seq++
		}
		if err := st.Send(msg); err != nil {
			break // the real error comes from Recv
		}
	}
	if err := st.CloseSend(); err != nil {
		return nil, nil, 0, err
	}
	var resp *internalv1pb.InternalInvokeResponse
	var body []byte
	chunks := 0
	var want uint64
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, chunks, err
		}
		if resp == nil {
			if msg.GetResponse() == nil {
				return nil, nil, chunks, errors.New("first response message has no response")
			}
			resp = msg.GetResponse()
		} else if msg.GetResponse() != nil {
			return nil, nil, chunks, errors.New("response metadata found in non-leading chunk")
		}
		if pl := msg.GetPayload(); pl != nil {
			if pl.GetSeq() != want {
				return nil, nil, chunks, fmt.Errorf("invalid sequence number: expected %d, got %d", want, pl.GetSeq())
			}
			want++
			chunks++
			body = append(body, pl.GetData()...)
		}
	}
	if resp == nil {
		return nil, nil, chunks, errors.New("empty response stream")
	}
	return resp, body, chunks, nil
}
