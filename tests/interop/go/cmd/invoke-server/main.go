// invoke-server is a Go peer serving dapr.proto.internals.v1.ServiceInvocation the way daprd's
// internal gRPC server does: the server credentials are GRPCServerOptionMTLS() (go-spiffe
// MTLSServerCredentials + AuthorizeAny) and the caller's identity is read with
// FromGRPCContext, as daprd's access control does. LIGHT build: the SVID comes from one
// newRequestFn-style request and both functions are the copies in internal/interop. FULL build
// (-tags daprfull): Dapr's own pkg/security provider and pkg/security/spiffe.FromGRPCContext.
//
// CallLocal (and CallLocalStream unless -no-stream) answer status 200 (or ?status=N from the
// querystring) with headers x-go-peer-spiffe-id / -namespace / -app-id, x-go-rpc and
// x-go-server-app-id, and a JSON body echoing what arrived. Prints
// {"address": "127.0.0.1:PORT", "spiffe_id": ...} once serving; stops on SIGTERM/SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	commonv1pb "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1pb "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/pysentry/interop/internal/identity"
	"github.com/pysentry/interop/internal/interop"
)

type server struct {
	internalv1pb.UnimplementedServiceInvocationServer
	appID string
}

type unaryOnly struct {
	internalv1pb.UnimplementedServiceInvocationServer
	s *server
}

func (u *unaryOnly) CallLocal(ctx context.Context, in *internalv1pb.InternalInvokeRequest) (*internalv1pb.InternalInvokeResponse, error) {
	return u.s.CallLocal(ctx, in)
}

type echo struct {
	RPC         string              `json:"rpc"`
	Ver         string              `json:"ver"`
	Method      string              `json:"method"`
	ContentType string              `json:"content_type"`
	Verb        string              `json:"verb"`
	Querystring string              `json:"querystring"`
	Metadata    map[string][]string `json:"metadata"`
	GRPCMeta    map[string][]string `json:"grpc_metadata"`
	Body        string              `json:"body"`
	BodyLen     int                 `json:"body_len"`
	Chunks      int                 `json:"chunks"`
	CallerID    string              `json:"caller_spiffe_id"`
	CallerNS    string              `json:"caller_namespace"`
	CallerApp   string              `json:"caller_app_id"`
}

func (s *server) respond(ctx context.Context, rpc string, in *internalv1pb.InternalInvokeRequest, body []byte, chunks int) (*internalv1pb.InternalInvokeResponse, []byte, error) {
	parsed, ok, err := identity.PeerFromGRPCContext(ctx)
	if err != nil {
		return nil, nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if !ok {
		return nil, nil, status.Error(codes.Unauthenticated, "no verified SPIFFE ID on this connection")
	}
	msg := in.GetMessage()
	if msg == nil {
		return nil, nil, status.Error(codes.InvalidArgument, "invalid request: missing message")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	e := echo{
		RPC:         rpc,
		Ver:         in.GetVer().String(),
		Method:      msg.GetMethod(),
		ContentType: msg.GetContentType(),
		Verb:        msg.GetHttpExtension().GetVerb().String(),
		Querystring: msg.GetHttpExtension().GetQuerystring(),
		Metadata:    interop.HeadersToMap(in.GetMetadata()),
		GRPCMeta:    md,
		Body:        string(body),
		BodyLen:     len(body),
		Chunks:      chunks,
		CallerID:    parsed.ID,
		CallerNS:    parsed.Namespace,
		CallerApp:   parsed.AppID,
	}
	out, err := json.Marshal(e)
	if err != nil {
		return nil, nil, status.Error(codes.Internal, err.Error())
	}
	code := int32(200)
	if q, err := url.ParseQuery(e.Querystring); err == nil && q.Get("status") != "" {
		if n, err := strconv.Atoi(q.Get("status")); err == nil {
			code = int32(n)
		}
	}
	fmt.Fprintf(os.Stderr, "invoke-server: %s %s from %s (%d bytes)\n", rpc, e.Method, e.CallerID, len(body))
	resp := &internalv1pb.InternalInvokeResponse{
		Status: &internalv1pb.Status{Code: code, Message: "OK"},
		Headers: interop.MapToHeaders(map[string][]string{
			"x-go-peer-spiffe-id": {e.CallerID},
			"x-go-peer-namespace": {e.CallerNS},
			"x-go-peer-app-id":    {e.CallerApp},
			"x-go-rpc":            {rpc},
			"x-go-server-app-id":  {s.appID},
		}),
		Message: &commonv1pb.InvokeResponse{ContentType: "application/json"},
	}
	return resp, out, nil
}

func (s *server) CallLocal(ctx context.Context, in *internalv1pb.InternalInvokeRequest) (*internalv1pb.InternalInvokeResponse, error) {
	resp, body, err := s.respond(ctx, "CallLocal", in, in.GetMessage().GetData().GetValue(), 0)
	if err != nil {
		return nil, err
	}
	resp.Message.Data = &anypb.Any{Value: body}
	return resp, nil
}

// CallLocalStream follows the proto contract (and daprd's invokeRemoteStream): the first
// message carries the request (and maybe chunk 0), later ones only payloads with seq 0, 1, 2...
func (s *server) CallLocalStream(stream internalv1pb.ServiceInvocation_CallLocalStreamServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetRequest()
	if req == nil {
		return status.Error(codes.InvalidArgument, "first message has no request")
	}
	var body []byte
	var seq uint64
	chunks := 0
	add := func(p *commonv1pb.StreamPayload) error {
		if p == nil {
			return nil
		}
		if p.GetSeq() != seq {
			return status.Errorf(codes.InvalidArgument, "invalid sequence number: expected %d, got %d", seq, p.GetSeq())
		}
		seq++
		chunks++
		body = append(body, p.GetData()...)
		return nil
	}
	if err := add(first.GetPayload()); err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if msg.GetRequest() != nil {
			return status.Error(codes.InvalidArgument, "request metadata found in non-leading chunk")
		}
		if err := add(msg.GetPayload()); err != nil {
			return err
		}
	}
	resp, out, err := s.respond(stream.Context(), "CallLocalStream", req, body, chunks)
	if err != nil {
		return err
	}
	for i := 0; i == 0 || i < len(out); i += interop.StreamChunk {
		end := min(i+interop.StreamChunk, len(out))
		msg := &internalv1pb.InternalInvokeResponseStream{
			Payload: &commonv1pb.StreamPayload{Data: out[i:end], Seq: uint64(i / interop.StreamChunk)},
		}
		if i == 0 {
			msg.Response = resp
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	interop.TakeStdout()
	var sec interop.SecurityFlags
	fs := flag.NewFlagSet("invoke-server", flag.ExitOnError)
	sec.Register(fs, "app-id")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	noStream := fs.Bool("no-stream", false, "answer CallLocalStream with Unimplemented (unary-only peer)")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	id, idErr, err := identity.Start(ctx, &sec, "", 30*time.Second)
	if err != nil {
		interop.Fail("identity", err)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		interop.Fail("listen", err)
	}
	// daprd's NewInternalServer options (pkg/api/grpc/server.go): mTLS + keepalive policy.
	srv := grpc.NewServer(
		id.GRPCServerOptionMTLS(),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 8 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 3 * time.Minute, Time: 10 * time.Second, Timeout: 5 * time.Second}),
	)
	impl := &server{appID: sec.AppID}
	if *noStream {
		internalv1pb.RegisterServiceInvocationServer(srv, &unaryOnly{s: impl})
	} else {
		internalv1pb.RegisterServiceInvocationServer(srv, impl)
	}
	go func() {
		select {
		case <-ctx.Done():
		case err := <-idErr:
			fmt.Fprintf(os.Stderr, "security provider stopped: %v\n", err)
		}
		srv.GracefulStop()
	}()
	interop.Emit(map[string]any{"address": lis.Addr().String(), "spiffe_id": id.ID().String(), "build": identity.Flavor})
	if err := srv.Serve(lis); err != nil {
		interop.Fail("serve", err)
	}
}
