package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"sigs.k8s.io/yaml"
)

const ecsTemplate = "ecs/dubebox.yaml"

// The parameters without a default, as an account would give them.
var accountParams = map[string]any{
	"VpcId":            "vpc-0a1b2c3d",
	"VpcCidr":          "10.20.0.0/16",
	"AllowedCidr":      "203.0.113.0/24",
	"PublicSubnetIds":  []any{"subnet-pub-a", "subnet-pub-b"},
	"PrivateSubnetIds": []any{"subnet-priv-a", "subnet-priv-b"},
	"ImageUri":         "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dubebox:1.0.0",
}

// The pseudo parameters CloudFormation defines.
var pseudoParams = []string{"AWS::AccountId", "AWS::NoValue", "AWS::NotificationARNs", "AWS::Partition",
	"AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}

// stack is the template as CloudFormation would create it for one set of
// parameters: goformation resolves the intrinsic functions (a reference to a
// resource becomes "ref:Name", an attribute "getatt:Name.Attr", as their
// values exist only in AWS) and decodes every resource strictly into
// CloudFormation's own resource types.
type stack struct {
	*cloudformation.Template
	properties map[string]json.RawMessage // each resource's resolved Properties
}

func createStack(t *testing.T, params map[string]any) stack {
	t.Helper()
	raw := readTemplate(t)
	// goformation evaluates a resource's "Condition" key as an expression;
	// CloudFormation decides with it whether the resource exists. Take the
	// conditions off, and drop the resources whose condition is false once
	// the conditions are evaluated.
	conditionOf := map[string]string{}
	for name, r := range raw["Resources"].(map[string]any) {
		res := r.(map[string]any)
		if c, ok := res["Condition"].(string); ok {
			conditionOf[name] = c
			delete(res, "Condition")
		}
	}
	b, _ := json.Marshal(raw)
	overrides := map[string]any{}
	for k, v := range accountParams {
		overrides[k] = v
	}
	for k, v := range params {
		overrides[k] = v
	}
	processed, err := intrinsics.ProcessJSON(b, &intrinsics.ProcessorOptions{
		ParameterOverrides: overrides,
		EvaluateConditions: true,
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref":        ref,
			"Fn::GetAtt": getAtt,
			"Fn::Sub":    sub,
		},
	})
	if err != nil {
		t.Fatalf("%s: %v", ecsTemplate, err)
	}
	var resolved struct {
		Conditions map[string]any
		Resources  map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal(processed, &resolved); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	_ = json.Unmarshal(processed, &out)
	for name, c := range conditionOf {
		if resolved.Conditions[c] != true {
			delete(out["Resources"].(map[string]any), name)
			delete(resolved.Resources, name)
		}
	}
	b, _ = json.Marshal(out)
	tmpl, err := goformation.ParseJSONWithOptions(b, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("%s with %v does not decode into CloudFormation's types: %v", ecsTemplate, params, err)
	}
	s := stack{Template: tmpl, properties: map[string]json.RawMessage{}}
	for name, r := range resolved.Resources {
		s.properties[name] = r["Properties"]
	}
	return s
}

// readTemplate returns the template with its short-form functions (!Ref)
// in their long form, unresolved: a copy of its own for each caller.
func readTemplate(t *testing.T) map[string]any {
	t.Helper()
	j, err := templateJSON()
	if err != nil {
		t.Fatalf("%s: %v", ecsTemplate, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(j, &raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

// templateJSON reads the template once: goformation's YAML reader keeps
// package-level state and cannot run in parallel tests.
var templateJSON = sync.OnceValues(func() ([]byte, error) {
	b, err := os.ReadFile(ecsTemplate)
	if err != nil {
		return nil, err
	}
	return intrinsics.ProcessYAML(b, &intrinsics.ProcessorOptions{NoProcess: true})
})

func ref(name string, input, template any) any {
	if v := intrinsics.Ref(name, input, template); v != nil || input == "AWS::NoValue" {
		return v
	}
	return fmt.Sprint("ref:", input)
}

func getAtt(_ string, input, _ any) any {
	switch v := input.(type) {
	case []any:
		return fmt.Sprintf("getatt:%v.%v", v[0], v[1])
	default:
		return fmt.Sprint("getatt:", v)
	}
}

// subVar is a ${Name}, ${Resource.Attribute} or ${AWS::Pseudo} in Fn::Sub;
// ${!Literal} is not a variable.
var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

func sub(_ string, input, template any) any {
	var src string
	vars := map[string]any{}
	switch v := input.(type) {
	case string:
		src = v
	case []any:
		src, _ = v[0].(string)
		vars, _ = v[1].(map[string]any)
	}
	return subVar.ReplaceAllStringFunc(src, func(m string) string {
		name := m[2 : len(m)-1]
		if v, ok := vars[name]; ok {
			return fmt.Sprint(v)
		}
		if res, attr, ok := strings.Cut(name, "."); ok {
			return fmt.Sprint(getAtt("", []any{res, attr}, template))
		}
		return fmt.Sprint(ref("", name, template))
	})
}

// TestECSTemplateReferences checks what CloudFormation would refuse before
// creating anything: every Ref, Fn::GetAtt, ${} in Fn::Sub, condition,
// mapping and DependsOn names something the template declares, and every
// parameter is used.
func TestECSTemplateReferences(t *testing.T) {
	t.Parallel()
	raw := readTemplate(t)
	section := func(name string) map[string]any {
		m, _ := raw[name].(map[string]any)
		return m
	}
	params, resources, conditions, mappings := section("Parameters"), section("Resources"), section("Conditions"), section("Mappings")
	used := map[string]bool{}
	check := func(path, kind, name string, in map[string]any) {
		used[name] = true
		pseudo := kind == "parameter or resource" && slices.Contains(pseudoParams, name)
		if _, ok := in[name]; !ok && !pseudo {
			t.Errorf("%s: %s names %q, which is not a declared %s", ecsTemplate, path, name, kind)
		}
	}
	refs := map[string]any{}
	for k, v := range params {
		refs[k] = v
	}
	for k, v := range resources {
		refs[k] = v
	}
	var walk func(path string, v any, local map[string]any)
	walk = func(path string, v any, local map[string]any) {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				walk(path+"["+strconv.Itoa(i)+"]", e, local)
			}
		case map[string]any:
			for k, e := range v {
				p := path + "." + k
				switch k {
				case "Ref":
					check(p, "parameter or resource", fmt.Sprint(e), refs)
				case "Fn::GetAtt":
					name := fmt.Sprint(e)
					if l, ok := e.([]any); ok {
						name = fmt.Sprint(l[0])
					}
					res, _, _ := strings.Cut(name, ".")
					check(p, "resource", res, resources)
				case "Fn::If":
					check(p, "condition", fmt.Sprint(e.([]any)[0]), conditions)
				case "Fn::FindInMap":
					check(p, "mapping", fmt.Sprint(e.([]any)[0]), mappings)
				case "Condition", "DependsOn":
					if strings.Count(path, ".") == 1 && strings.HasPrefix(path, "Resources.") {
						kind, in := "condition", conditions
						if k == "DependsOn" {
							kind, in = "resource", resources
						}
						for _, name := range strings.Fields(strings.Trim(fmt.Sprint(e), "[]")) {
							check(p, kind, name, in)
						}
						continue
					}
				case "Fn::Sub":
					src, locals := e, map[string]any{}
					if l, ok := e.([]any); ok {
						src = l[0]
						locals, _ = l[1].(map[string]any)
					}
					for _, m := range subVar.FindAllStringSubmatch(fmt.Sprint(src), -1) {
						if _, ok := locals[m[1]]; ok {
							continue
						}
						if res, _, ok := strings.Cut(m[1], "."); ok {
							check(p, "resource", res, resources)
						} else {
							check(p, "parameter or resource", m[1], refs)
						}
					}
				}
				walk(p, e, local)
			}
		}
	}
	walk("", raw, nil)
	for name := range params {
		if !used[name] {
			t.Errorf("%s: parameter %s is never used", ecsTemplate, name)
		}
	}
	for name := range conditions {
		if !used[name] {
			t.Errorf("%s: condition %s is never used", ecsTemplate, name)
		}
	}
}

// TestECSTemplateVariables checks that the API container's environment and
// secrets, in any of the template's branches, with the variables the
// template's metadata lists as left at their defaults, are exactly the
// variables the service reads.
func TestECSTemplateVariables(t *testing.T) {
	t.Parallel()
	svc := readService(t)
	raw := readTemplate(t)
	td := raw["Resources"].(map[string]any)["TaskDefinition"].(map[string]any)["Properties"].(map[string]any)
	var api map[string]any
	for _, c := range td["ContainerDefinitions"].([]any) {
		if c := c.(map[string]any); c["Name"] == "api" {
			api = c
		}
	}
	if api == nil {
		t.Fatal("the task definition has no container named api")
	}
	plain, secret := names(api["Environment"]), names(api["Secrets"])
	meta, _ := raw["Metadata"].(map[string]any)["DubeBox::Defaults"].(map[string]any)
	svc.checkVars(t, "the ECS task definition", plain, secret, keys(meta))
}

// names lists the "Name" of every object in v, whichever branch of an
// Fn::If it is in.
func names(v any) []string {
	var out []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			out = append(out, names(e)...)
		}
	case map[string]any:
		if n, ok := v["Name"].(string); ok {
			return []string{n}
		}
		for _, e := range v {
			out = append(out, names(e)...)
		}
	}
	return out
}

// TestECSTemplate creates the stack for each Redis mode, with and without
// HTTPS, and checks it against the service and the ECS API.
func TestECSTemplate(t *testing.T) {
	t.Parallel()
	svc := readService(t)
	for _, cluster := range []bool{false, true} {
		for _, https := range []bool{false, true} {
			params := map[string]any{"ClusterMode": "disabled", "CertificateArn": "PLAIN-HTTP"}
			if cluster {
				params["ClusterMode"] = "enabled"
			}
			if https {
				params["CertificateArn"] = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0e"
			}
			t.Run(fmt.Sprintf("cluster=%v/https=%v", cluster, https), func(t *testing.T) {
				t.Parallel()
				checkStack(t, svc, createStack(t, params), cluster, https)
			})
		}
	}
}

func checkStack(t *testing.T, svc service, s stack, cluster, https bool) {
	t.Helper()
	// The task definition, decoded strictly into the ECS API's own request
	// type: a field ECS does not know fails here rather than at deploy time.
	var td awsecs.RegisterTaskDefinitionInput
	dec := json.NewDecoder(bytes.NewReader(s.properties["TaskDefinition"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&td); err != nil {
		t.Fatalf("the task definition does not decode into ecs.RegisterTaskDefinitionInput: %v", err)
	}
	if got := string(td.NetworkMode); got != "awsvpc" {
		t.Errorf("network mode %q, want awsvpc (Fargate)", got)
	}
	var api, collector *int
	for i, c := range td.ContainerDefinitions {
		switch deref(c.Name) {
		case "api":
			api = &i
		case "collector":
			collector = &i
		}
	}
	if api == nil || collector == nil {
		t.Fatalf("the task definition needs containers api and collector")
	}
	c := td.ContainerDefinitions[*api]

	// Variables: the secrets from Secrets Manager (TestECSTemplateVariables
	// checks the names over every branch of the template).
	var secret []string
	env := map[string]string{}
	for _, e := range c.Environment {
		env[deref(e.Name)] = deref(e.Value)
	}
	for _, e := range c.Secrets {
		secret = append(secret, deref(e.Name))
		from := strings.TrimPrefix(deref(e.ValueFrom), "ref:")
		if typ := s.Resources[from]; typ == nil || typ.AWSCloudFormationType() != "AWS::SecretsManager::Secret" {
			t.Errorf("secret %s comes from %q, want a Secrets Manager secret of the template", deref(e.Name), deref(e.ValueFrom))
		}
	}
	for _, name := range []string{"REDIS_PASSWORD", "API_TOKEN"} {
		if !slices.Contains(secret, name) {
			t.Errorf("%s is not taken from Secrets Manager", name)
		}
	}
	if cluster {
		expect(t, "REDIS_CLUSTER_ADDRS", env["REDIS_CLUSTER_ADDRS"], "getatt:Redis.ConfigurationEndPoint.Address:getatt:Redis.ConfigurationEndPoint.Port")
	} else {
		expect(t, "REDIS_ADDR", env["REDIS_ADDR"], "getatt:Redis.PrimaryEndPoint.Address:getatt:Redis.PrimaryEndPoint.Port")
	}
	expect(t, "REDIS_TLS", env["REDIS_TLS"], "true")
	// X-Forwarded-For is believed from the load balancer's addresses alone:
	// trusting every address would let a client name itself in the header.
	expect(t, "TRUSTED_PROXIES", env["TRUSTED_PROXIES"], fmt.Sprint(accountParams["VpcCidr"]))
	// /metrics on a port of its own, which the load balancer does not reach.
	if _, port, err := net.SplitHostPort(env["METRICS_ADDR"]); err != nil || port == svc.port {
		t.Errorf("METRICS_ADDR %q: want /metrics on a port other than the load balancer's target, %s", env["METRICS_ADDR"], svc.port)
	}

	// The container: its port, health check, user and shutdown time.
	if len(c.PortMappings) != 1 || fmt.Sprint(deref(c.PortMappings[0].ContainerPort)) != svc.port {
		t.Errorf("port mappings %+v, want the one port HTTP_ADDR's default listens on, %s", c.PortMappings, svc.port)
	}
	if c.HealthCheck == nil || !slices.Equal(c.HealthCheck.Command, append([]string{"CMD"}, svc.healthcheck...)) {
		t.Errorf("health check %+v, want the image's: CMD %q", c.HealthCheck, svc.healthcheck)
	}
	if !deref(c.ReadonlyRootFilesystem) {
		t.Error("the root file system is writable")
	}
	if uid, _, _ := strings.Cut(deref(c.User), ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("user %q: want a numeric non-root user", deref(c.User))
	}
	if c.LinuxParameters == nil || c.LinuxParameters.Capabilities == nil ||
		!slices.Equal(c.LinuxParameters.Capabilities.Drop, []string{"ALL"}) || len(c.LinuxParameters.Capabilities.Add) > 0 {
		t.Error("the container keeps Linux capabilities: want Drop [ALL] and nothing added")
	}
	if stop := deref(c.StopTimeout); float64(stop) <= svc.shutdown.Seconds() {
		t.Errorf("StopTimeout %d s leaves no room for SHUTDOWN_TIMEOUT (%s)", stop, svc.shutdown)
	}
	if c.LogConfiguration == nil || c.LogConfiguration.LogDriver != "awslogs" {
		t.Error("the API's logs do not go to CloudWatch (awslogs)")
	}

	// The collector: OTLP where the service sends it, and the scrape jobs
	// under prometheus.yml's names.
	otlp := env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	checkCollector(t, svc, s, "ApiCollectorConfig", otlp)
	checkCollector(t, svc, s, "ExporterCollectorConfig", "")

	// The load balancer: a listener forwarding to a target group on the
	// container's port that health-checks readiness.
	tg, err := s.GetElasticLoadBalancingV2TargetGroupWithName("TargetGroup")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "target group port", fmt.Sprint(deref(tg.Port)), svc.port)
	expect(t, "target group health check", deref(tg.HealthCheckPath), readinessPath)
	expect(t, "target type", deref(tg.TargetType), "ip")
	l, err := s.GetElasticLoadBalancingV2ListenerWithName("Listener")
	if err != nil {
		t.Fatal(err)
	}
	wantProto, wantPort := "HTTP", 80
	if https {
		wantProto, wantPort = "HTTPS", 443
	}
	expect(t, "listener", fmt.Sprint(deref(l.Protocol), deref(l.Port)), fmt.Sprint(wantProto, wantPort))
	if len(l.DefaultActions) != 1 || l.DefaultActions[0].Type != "forward" || deref(l.DefaultActions[0].TargetGroupArn) != "ref:TargetGroup" {
		t.Errorf("the listener does not forward to the target group: %+v", l.DefaultActions)
	}
	checkEdge(t, s, https)
	svcRes, err := s.GetECSServiceWithName("Service")
	if err != nil {
		t.Fatal(err)
	}
	if len(svcRes.LoadBalancers) != 1 || deref(svcRes.LoadBalancers[0].ContainerName) != "api" ||
		fmt.Sprint(deref(svcRes.LoadBalancers[0].ContainerPort)) != svc.port {
		t.Errorf("the service registers %+v with the load balancer, want container api on %s", svcRes.LoadBalancers, svc.port)
	}
	vpc := svcRes.NetworkConfiguration.AwsvpcConfiguration
	if deref(vpc.AssignPublicIp) != "DISABLED" || !slices.Equal(vpc.Subnets, strs(accountParams["PrivateSubnetIds"])) {
		t.Errorf("the tasks run with public IP %q in %v, want none in the private subnets", deref(vpc.AssignPublicIp), vpc.Subnets)
	}
	expect(t, "launch type", deref(svcRes.LaunchType), "FARGATE")

	// Security groups: each admits one port from one source.
	ingress := func(name string) string {
		sg, err := s.GetEC2SecurityGroupWithName(name)
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, r := range sg.SecurityGroupIngress {
			from := deref(r.CidrIp) + deref(r.SourceSecurityGroupId)
			rules = append(rules, fmt.Sprintf("%s %d-%d from %s", r.IpProtocol, deref(r.FromPort), deref(r.ToPort), from))
		}
		return strings.Join(rules, "; ")
	}
	wantLB := "tcp 80-80 from 203.0.113.0/24"
	if https {
		wantLB = "tcp 443-443 from 203.0.113.0/24; " + wantLB
	}
	expect(t, "load balancer ingress", ingress("LoadBalancerSecurityGroup"), wantLB)
	expect(t, "task ingress", ingress("TaskSecurityGroup"), fmt.Sprintf("tcp %s-%s from ref:LoadBalancerSecurityGroup", svc.port, svc.port))
	expect(t, "exporter ingress", ingress("ExporterSecurityGroup"), "")
	expect(t, "Redis ingress", ingress("RedisSecurityGroup"), "tcp 6379-6379 from ref:TaskSecurityGroup; tcp 6379-6379 from ref:ExporterSecurityGroup")
	checkLeastPrivilege(t, s)

	// Redis: TLS and AUTH from the secret the tasks read, in the mode asked.
	rg, err := s.GetElastiCacheReplicationGroupWithName("Redis")
	if err != nil {
		t.Fatal(err)
	}
	if !deref(rg.TransitEncryptionEnabled) || deref(rg.TransitEncryptionMode) != "required" || !deref(rg.AtRestEncryptionEnabled) {
		t.Error("Redis is not encrypted in transit (required) and at rest")
	}
	expect(t, "Redis AUTH token", deref(rg.AuthToken), "{{resolve:secretsmanager:ref:RedisAuthToken}}")
	expect(t, "Redis port", fmt.Sprint(deref(rg.Port)), "6379")
	wantMode := map[bool]string{false: "Disabled", true: "Enabled"}[cluster]
	expect(t, "cluster mode", deref(rg.ClusterMode), wantMode)
	if !deref(rg.AutomaticFailoverEnabled) {
		t.Error("Redis has no automatic failover")
	}
}

// checkCollector reads an ADOT collector's configuration from its SSM
// parameter: its scrape jobs must be prometheus.yml's, under the same names
// (the dashboard's queries select by job) and on the same ports; and when
// otlp is set, the collector must receive OTLP/HTTP on that endpoint's port.
func checkCollector(t *testing.T, svc service, s stack, param, otlp string) {
	t.Helper()
	p, err := s.GetSSMParameterWithName(param)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Receivers struct {
			OTLP *struct {
				Protocols struct {
					HTTP struct {
						Endpoint string `json:"endpoint"`
					} `json:"http"`
				} `json:"protocols"`
			} `json:"otlp"`
			Prometheus struct {
				Config promConfig `json:"config"`
			} `json:"prometheus"`
		} `json:"receivers"`
	}
	if err := yaml.Unmarshal([]byte(p.Value), &cfg); err != nil {
		t.Fatalf("%s: %v", param, err)
	}
	jobs := cfg.Receivers.Prometheus.Config.ScrapeConfigs
	if len(jobs) == 0 {
		t.Errorf("%s scrapes nothing", param)
	}
	for _, j := range jobs {
		want, ok := svc.jobs[j.JobName]
		_, port, _ := net.SplitHostPort(j.StaticConfigs[0].Targets[0])
		switch {
		case !ok:
			t.Errorf("%s: job %q is not one of prometheus.yml's (%v)", param, j.JobName, keys(svc.jobs))
		case port != want:
			t.Errorf("%s: job %s scrapes port %s, prometheus.yml %s", param, j.JobName, port, want)
		}
	}
	if otlp == "" {
		return
	}
	_, want, _ := net.SplitHostPort(strings.TrimPrefix(otlp, "http://"))
	if cfg.Receivers.OTLP == nil {
		t.Fatalf("%s receives no OTLP, but the API sends to %s", param, otlp)
	}
	_, got, _ := net.SplitHostPort(cfg.Receivers.OTLP.Protocols.HTTP.Endpoint)
	if got != want {
		t.Errorf("%s receives OTLP/HTTP on port %q, but the API sends to %s", param, got, otlp)
	}
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// TestECSTemplateParameters checks the parameters that decide what the
// stack exposes: no default opens the load balancer to everyone or serves
// plain HTTP; a certificate, or PLAIN-HTTP chosen by name, is required.
func TestECSTemplateParameters(t *testing.T) {
	t.Parallel()
	params := readTemplate(t)["Parameters"].(map[string]any)
	for _, name := range []string{"AllowedCidr", "CertificateArn", "VpcCidr"} {
		if d, ok := params[name].(map[string]any)["Default"]; ok {
			t.Errorf("parameter %s has the default %q: it must be chosen", name, d)
		}
	}
	cert := regexp.MustCompile(params["CertificateArn"].(map[string]any)["AllowedPattern"].(string))
	for v, want := range map[string]bool{
		"arn:aws:acm:eu-west-1:123456789012:certificate/0f0e": true,
		"PLAIN-HTTP": true, "": false, "plain": false, "arn:aws:iam::123456789012:server-certificate/x": false,
	} {
		if cert.MatchString(v) != want {
			t.Errorf("CertificateArn %q: allowed %v, want %v", v, !want, want)
		}
	}
	cidr := regexp.MustCompile(params["AllowedCidr"].(map[string]any)["AllowedPattern"].(string))
	if !cidr.MatchString("0.0.0.0/0") || cidr.MatchString("") {
		t.Errorf("AllowedCidr's pattern must take a CIDR and refuse an empty value")
	}
}

// checkEdge checks what stands between the internet and the tasks: TLS 1.2
// or later with port 80 only redirecting, invalid headers dropped, access
// logs in a private, encrypted bucket the load balancer may write to, and
// AWS WAF in front.
func checkEdge(t *testing.T, s stack, https bool) {
	t.Helper()
	l, err := s.GetElasticLoadBalancingV2ListenerWithName("Listener")
	if err != nil {
		t.Fatal(err)
	}
	redirect, rerr := s.GetElasticLoadBalancingV2ListenerWithName("RedirectListener")
	if https {
		if p := deref(l.SslPolicy); !strings.HasPrefix(p, "ELBSecurityPolicy-TLS13-1-2") {
			t.Errorf("SslPolicy %q: want one of TLS 1.3 and 1.2 only", p)
		}
		if rerr != nil || deref(redirect.Port) != 80 || len(redirect.DefaultActions) != 1 || redirect.DefaultActions[0].Type != "redirect" ||
			redirect.DefaultActions[0].RedirectConfig == nil || deref(redirect.DefaultActions[0].RedirectConfig.Protocol) != "HTTPS" ||
			deref(redirect.DefaultActions[0].RedirectConfig.Port) != "443" {
			t.Errorf("with HTTPS, port 80 must only redirect to 443: %v %+v", rerr, redirect)
		}
	} else if rerr == nil {
		t.Errorf("with PLAIN-HTTP there is no HTTPS to redirect to, yet a redirect listener exists")
	}

	lb, err := s.GetElasticLoadBalancingV2LoadBalancerWithName("LoadBalancer")
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{}
	for _, a := range lb.LoadBalancerAttributes {
		attrs[deref(a.Key)] = deref(a.Value)
	}
	for k, want := range map[string]string{
		"routing.http.drop_invalid_header_fields.enabled": "true",
		"access_logs.s3.enabled":                          "true",
		"access_logs.s3.bucket":                           "ref:AccessLogBucket",
	} {
		expect(t, "load balancer attribute "+k, attrs[k], want)
	}
	bucket, err := s.GetS3BucketWithName("AccessLogBucket")
	if err != nil {
		t.Fatal(err)
	}
	if pab := bucket.PublicAccessBlockConfiguration; pab == nil || !deref(pab.BlockPublicAcls) || !deref(pab.BlockPublicPolicy) ||
		!deref(pab.IgnorePublicAcls) || !deref(pab.RestrictPublicBuckets) {
		t.Errorf("the access log bucket does not block public access: %+v", bucket.PublicAccessBlockConfiguration)
	}
	if enc := bucket.BucketEncryption; enc == nil || len(enc.ServerSideEncryptionConfiguration) != 1 ||
		enc.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm != "AES256" {
		t.Errorf("the access log bucket must use SSE-S3, the only encryption load balancers write to")
	}
	var policy struct {
		PolicyDocument struct {
			Statement []struct {
				Effect    string
				Principal any
				Action    any
				Resource  any
			}
		}
	}
	if err := json.Unmarshal(s.properties["AccessLogBucketPolicy"], &policy); err != nil {
		t.Fatal(err)
	}
	var writes bool
	for _, st := range policy.PolicyDocument.Statement {
		principal, _ := st.Principal.(map[string]any)
		if st.Effect == "Allow" && st.Action == "s3:PutObject" && strings.Contains(fmt.Sprint(st.Resource), "/alb/AWSLogs/") &&
			(principal["Service"] == "logdelivery.elasticloadbalancing.amazonaws.com" || strings.HasPrefix(fmt.Sprint(principal["AWS"]), "arn:")) {
			writes = true
		}
	}
	if !writes || attrs["access_logs.s3.prefix"] != "alb" {
		t.Errorf("the bucket policy does not let the load balancer write under its prefix: %s", s.properties["AccessLogBucketPolicy"])
	}

	assoc, err := s.GetWAFv2WebACLAssociationWithName("WebAclAssociation")
	if err != nil {
		t.Fatalf("no AWS WAF web ACL in front of the load balancer: %v", err)
	}
	expect(t, "WAF association", assoc.ResourceArn+" "+assoc.WebACLArn, "ref:LoadBalancer getatt:WebAcl.Arn")
	acl, err := s.GetWAFv2WebACLWithName("WebAcl")
	if err != nil {
		t.Fatal(err)
	}
	var rate bool
	for _, r := range acl.Rules {
		if r.Statement != nil && r.Statement.RateBasedStatement != nil && r.Action != nil && r.Action.Block != nil {
			rate = true
		}
	}
	if acl.Scope != "REGIONAL" || !rate {
		t.Errorf("the web ACL must be regional with a blocking rate limit per client: %+v", acl.Rules)
	}
}

// checkLeastPrivilege checks that every container of both task definitions
// runs like the API (a non-root user, a read-only root, no capabilities)
// and that the exporter has a role and a security group of its own.
func checkLeastPrivilege(t *testing.T, s stack) {
	t.Helper()
	for _, name := range []string{"TaskDefinition", "ExporterTaskDefinition"} {
		td, err := s.GetECSTaskDefinitionWithName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range td.ContainerDefinitions {
			uid, _, _ := strings.Cut(deref(c.User), ":")
			if _, err := strconv.Atoi(uid); err != nil || uid == "0" {
				t.Errorf("%s/%s: user %q, want a numeric non-root user", name, c.Name, deref(c.User))
			}
			if !deref(c.ReadonlyRootFilesystem) {
				t.Errorf("%s/%s: the root file system is writable", name, c.Name)
			}
			if c.LinuxParameters == nil || c.LinuxParameters.Capabilities == nil ||
				!slices.Equal(c.LinuxParameters.Capabilities.Drop, []string{"ALL"}) || len(c.LinuxParameters.Capabilities.Add) > 0 {
				t.Errorf("%s/%s keeps Linux capabilities", name, c.Name)
			}
		}
	}
	api, _ := s.GetECSTaskDefinitionWithName("TaskDefinition")
	exp, _ := s.GetECSTaskDefinitionWithName("ExporterTaskDefinition")
	if deref(api.TaskRoleArn) == deref(exp.TaskRoleArn) || deref(api.ExecutionRoleArn) == deref(exp.ExecutionRoleArn) {
		t.Errorf("the exporter shares the API's roles: task %s, execution %s", deref(exp.TaskRoleArn), deref(exp.ExecutionRoleArn))
	}
	es, err := s.GetECSServiceWithName("ExporterService")
	if err != nil {
		t.Fatal(err)
	}
	if sgs := es.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups; len(sgs) != 1 || sgs[0] != "ref:ExporterSecurityGroup" {
		t.Errorf("the exporter runs in %v, want a security group of its own", sgs)
	}
	role, err := s.GetIAMRoleWithName("ExporterTaskRole")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(role); strings.Contains(string(b), "XrayWrite") || strings.Contains(string(b), "ApiToken") {
		t.Errorf("the exporter's role may do what only the API needs: %s", b)
	}
	exec, err := s.GetIAMRoleWithName("ExporterExecutionRole")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(exec); strings.Contains(string(b), "ApiToken") || strings.Contains(string(b), "ApiCollectorConfig") {
		t.Errorf("the exporter's execution role reads the API's secrets: %s", b)
	}
}
