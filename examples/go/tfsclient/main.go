// A Go client of tfs-gateway, built from plain protoc output (see README.md beside this file).
//
//	tfsclient -gateway localhost:9000 -model colors [-detect] IMAGE...
//
// Prints one line per label (Classify) or per box (Detect).
package main

import (
	"context"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"time"

	"google.golang.org/grpc"

	pb "tfsgateway/v1"
)

func main() {
	gateway := flag.String("gateway", "localhost:9000", "gateway address")
	model := flag.String("model", "colors", "model name")
	detect := flag.Bool("detect", false, "call Detect instead of Classify")
	topK := flag.Uint("top-k", 3, "labels per image (Classify)")
	flag.Parse()

	// gRPC-Go 1.33 (Debian's) predates credentials/insecure.
	conn, err := grpc.Dial(*gateway, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := pb.NewImageGatewayClient(conn)

	for _, path := range flag.Args() {
		image, err := ioutil.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ref := &pb.ModelRef{Name: *model}
		if *detect {
			response, err := client.Detect(ctx, &pb.DetectRequest{Model: ref, Image: image})
			if err != nil {
				fmt.Fprintln(os.Stderr, "detect:", err)
				os.Exit(1)
			}
			for _, d := range response.Detections {
				b := d.PixelBox
				fmt.Printf("%s\t%s\t%d\t%.4f\t%.0f,%.0f,%.0f,%.0f\n", path, d.Label, d.ClassId, d.Score,
					b.Xmin, b.Ymin, b.Xmax, b.Ymax)
			}
		} else {
			response, err := client.Classify(ctx, &pb.ClassifyRequest{Model: ref, Image: image, TopK: uint32(*topK)})
			if err != nil {
				fmt.Fprintln(os.Stderr, "classify:", err)
				os.Exit(1)
			}
			for _, c := range response.Classifications {
				fmt.Printf("%s\t%s\t%d\t%.4f\n", path, c.Label, c.ClassId, c.Score)
			}
		}
		cancel()
	}
}
