#!/usr/bin/env python3
"""Why: deploy/validate's own checks of the recipes: the isolation invariants of compose.yaml and deploy/k8s, the Compose schema, and the mutations of its negative self-test.

Commands (run by deploy/validate, with the venv's python: PyYAML, jsonschema):
  compose-schema SCHEMA COMPOSE_FILE ENV_FILE   the file, interpolated with ENV_FILE, against the Compose spec
  check DIR                                     DIR/compose/{compose.yaml,imgate.toml}, DIR/k8s/*.yaml
  mutations                                     the names of the self-test's mutations
  mutate NAME DIR OUT                           a copy of DIR with one invariant broken, into OUT
  configmap-toml FILE NAME KEY OUT              writes a ConfigMap's data[KEY] to OUT (for imgate check-config)
Exit 0 when everything holds, 1 with one line per broken invariant otherwise.
"""

import glob
import json
import os
import re
import sys
import tomllib

import jsonschema
import yaml

# The names the recipes agree on (docs/deploy.md).
SIDE_LABEL = "imgate.deploy/side"
INTERNAL_NETWORKS = ("openim", "imgate-state")
GATEWAY_PORT = 8080
OPENIM_NS, IMGATE_NS = "openim", "imgate"
OPENIM_PORTS = {10001, 10002}
IMGATE_POD = {"app.kubernetes.io/name": "imgate"}
REDIS_POD = {"app.kubernetes.io/name": "imgate-redis"}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|ACCESSKEY|API_?KEY", re.I)
PLACEHOLDER = "REPLACE ME"


# ---------------------------------------------------------------------------------------------
# Compose


def read_env_file(path):
    env = {}
    if path and os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip()
    return env


_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env):
    """Compose's variable interpolation of every string in a loaded file ($$, $X, ${X}, ${X:-d}, ${X-d}, ${X:?e})."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4)
        val = env.get(name)
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op in (":?", "?") and not val:
            raise ValueError(f"variable {name} is required: {arg}")
        return val or ""

    return _VAR.sub(sub, value)


def load_compose(path, env_file=None):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    env = read_env_file(env_file)
    env.update({k: v for k, v in os.environ.items() if k in env})
    return interpolate(doc, env)


def as_dict(value, sep="="):
    """Compose allows maps or lists of `k=v` for labels and environment."""
    if isinstance(value, dict):
        return value
    out = {}
    for item in value or []:
        k, _, v = str(item).partition(sep)
        out[k] = v
    return out


def service_networks(svc):
    nets = svc.get("networks")
    if nets is None:
        return ["default"]
    return list(nets) if isinstance(nets, (list, dict)) else []


def container_port(port):
    if isinstance(port, dict):
        return int(str(port.get("target")).split("/")[0])
    return int(str(port).split("/")[0].rsplit(":", 1)[-1].split("-")[0])


def check_compose(doc, toml_path):
    errors = []
    networks = doc.get("networks") or {}
    for name in INTERNAL_NETWORKS:
        net = networks.get(name)
        if net is None:
            errors.append(f"compose: network `{name}` is missing")
        elif not (net or {}).get("internal") is True:
            errors.append(f"compose: network `{name}` must be `internal: true`")

    def internal(net_name):
        return (networks.get(net_name) or {}).get("internal") is True

    services = doc.get("services") or {}
    gateways = []
    for name, svc in services.items():
        svc = svc or {}
        side = as_dict(svc.get("labels")).get(SIDE_LABEL)
        if side not in ("gateway", "openim", "state"):
            errors.append(f"compose: service `{name}` has no label {SIDE_LABEL} = gateway | openim | state")
            continue
        if "network_mode" in svc:
            errors.append(f"compose: service `{name}` sets network_mode (it would bypass the networks' isolation)")
        if side == "gateway":
            gateways.append(name)
            dockerfile = str((svc.get("build") or {}).get("dockerfile", ""))
            if not dockerfile.endswith("deploy/Dockerfile"):
                errors.append(f"compose: gateway service `{name}` is not built from deploy/Dockerfile (only imgate may publish)")
            for port in svc.get("ports") or []:
                if container_port(port) != GATEWAY_PORT:
                    errors.append(f"compose: gateway service `{name}` publishes container port {container_port(port)}; only imgate's listener ({GATEWAY_PORT}) may be published")
            if "openim" not in service_networks(svc):
                errors.append(f"compose: gateway service `{name}` is not on network `openim` (it could not reach OpenIM)")
        else:
            if svc.get("ports"):
                errors.append(f"compose: service `{name}` ({side} side) publishes ports; only imgate may")
            for net in service_networks(svc):
                if not internal(net):
                    errors.append(f"compose: service `{name}` ({side} side) is on network `{net}`, which is not internal")
        for key, value in as_dict(svc.get("environment")).items():
            if SECRETISH.search(key) and not key.endswith("_FILE") and value not in (None, ""):
                errors.append(f"compose: service `{name}` has a secret in its environment ({key}); use a secrets: file")
    if not any((services.get(g) or {}).get("ports") for g in gateways):
        errors.append("compose: no imgate service publishes a port")
    for name, secret in (doc.get("secrets") or {}).items():
        if "file" not in (secret or {}):
            errors.append(f"compose: secret `{name}` is not read from a file")
    errors += check_imgate_toml(toml_path, "compose imgate.toml")
    return errors


def check_imgate_toml(path_or_text, what, text=False):
    errors = []
    try:
        cfg = tomllib.loads(path_or_text) if text else tomllib.load(open(path_or_text, "rb"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return [f"{what}: {e}"]
    openim = cfg.get("openim", {})
    if "secret" in openim:
        errors.append(f"{what}: openim.secret is inline; use openim.secret_file")
    url = cfg.get("store", {}).get("url", "")
    m = re.match(r"^rediss?://(?:([^:@/]*)(?::([^@/]*))?@)?", url)
    if m and m.group(2) not in (None, "", "__REDIS_PASSWORD__"):
        errors.append(f"{what}: store.url carries a password; write __REDIS_PASSWORD__ (filled in from a secret file)")
    return errors


# ---------------------------------------------------------------------------------------------
# Kubernetes


def load_k8s(directory):
    objs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            objs += [d for d in yaml.safe_load_all(f) if d]
    return objs


def labels_match(selector, labels):
    """A label selector (matchLabels only: the recipes use no expressions) selects `labels`."""
    if selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def is_empty_selector(selector):
    return not (selector or {}).get("matchLabels") and not (selector or {}).get("matchExpressions")


def port_numbers(rule):
    return [p.get("port") for p in rule.get("ports") or []]


def is_imgate_peer(peer):
    ns = peer.get("namespaceSelector")
    pod = peer.get("podSelector")
    return (
        ns is not None
        and not ns.get("matchExpressions")
        and (ns.get("matchLabels") or {}) == {"kubernetes.io/metadata.name": IMGATE_NS}
        and pod is not None
        and not is_empty_selector(pod)
        and labels_match(pod, IMGATE_POD)
        and all(pod.get("matchLabels", {}).get(k) == v for k, v in IMGATE_POD.items())
    )


def check_k8s(objs):
    errors = []
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)

    def ns(o):
        return (o.get("metadata") or {}).get("namespace")

    names = {(o.get("metadata") or {}).get("name") for o in by_kind.get("Namespace", [])}
    for n in (IMGATE_NS, OPENIM_NS):
        if n not in names:
            errors.append(f"k8s: Namespace `{n}` is missing")

    policies = by_kind.get("NetworkPolicy", [])
    openim_pols = [p for p in policies if ns(p) == OPENIM_NS]

    # 1. OpenIM's namespace denies ingress by default.
    if not any(
        is_empty_selector(p["spec"].get("podSelector"))
        and "Ingress" in (p["spec"].get("policyTypes") or [])
        and not p["spec"].get("ingress")
        for p in openim_pols
    ):
        errors.append(f"k8s: no default-deny ingress NetworkPolicy (podSelector {{}}, no rules) in namespace `{OPENIM_NS}`")

    # 2. Every rule admitting traffic to OpenIM's pods names OpenIM's own pods, or imgate's pods on 10001/10002.
    imgate_ports = set()
    for p in openim_pols:
        name = p["metadata"]["name"]
        for i, rule in enumerate(p["spec"].get("ingress") or []):
            peers = rule.get("from") or []
            if not peers:
                errors.append(f"k8s: NetworkPolicy {OPENIM_NS}/{name} rule {i} has no `from`: it admits ingress from everywhere")
            for peer in peers:
                if "ipBlock" in peer:
                    errors.append(f"k8s: NetworkPolicy {OPENIM_NS}/{name} rule {i} admits an ipBlock")
                elif "namespaceSelector" not in peer:
                    continue  # pods of OpenIM's own namespace
                elif not is_imgate_peer(peer):
                    errors.append(f"k8s: NetworkPolicy {OPENIM_NS}/{name} rule {i} admits pods other than imgate's ({IMGATE_NS} namespace, {IMGATE_POD})")
                else:
                    ports = port_numbers(rule)
                    if not ports or not set(ports) <= OPENIM_PORTS:
                        errors.append(f"k8s: NetworkPolicy {OPENIM_NS}/{name} rule {i} admits imgate on ports {ports or 'all'}; only 10001 and 10002")
                    else:
                        imgate_ports |= set(ports)
    if imgate_ports != OPENIM_PORTS:
        errors.append(f"k8s: no NetworkPolicy admits imgate's pods to OpenIM on 10001 and 10002 (found {sorted(imgate_ports)})")

    # 3. Nothing publishes OpenIM: only Services selecting imgate's pods may be NodePort/LoadBalancer or sit behind an Ingress.
    for s in by_kind.get("Service", []):
        spec = s.get("spec") or {}
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            sel = spec.get("selector") or {}
            if ns(s) != IMGATE_NS or sel.get("app.kubernetes.io/name") != IMGATE_POD["app.kubernetes.io/name"]:
                errors.append(f"k8s: Service {ns(s)}/{s['metadata']['name']} is {spec['type']} but does not select imgate's pods")
            for port in spec.get("ports") or []:
                if port.get("targetPort") not in ("http", GATEWAY_PORT):
                    errors.append(f"k8s: Service {ns(s)}/{s['metadata']['name']} publishes target port {port.get('targetPort')}; only imgate's http")
    for ing in by_kind.get("Ingress", []):
        if ns(ing) != IMGATE_NS:
            errors.append(f"k8s: Ingress {ns(ing)}/{ing['metadata']['name']} outside namespace `{IMGATE_NS}`")

    # 4. imgate's Deployment: two replicas, health probes, limits, non-root, read-only root.
    deployments = [d for d in by_kind.get("Deployment", []) if ns(d) == IMGATE_NS and d["metadata"]["name"] == "imgate"]
    if not deployments:
        errors.append(f"k8s: Deployment {IMGATE_NS}/imgate is missing")
    for d in deployments:
        spec = d["spec"]
        tmpl = spec["template"]
        if (spec.get("replicas") or 1) < 2:
            errors.append("k8s: Deployment imgate runs fewer than 2 replicas")
        if not labels_match({"matchLabels": IMGATE_POD}, (tmpl.get("metadata") or {}).get("labels") or {}):
            errors.append(f"k8s: Deployment imgate's pods lack the label {IMGATE_POD} the NetworkPolicies admit")
        pod_sc = tmpl["spec"].get("securityContext") or {}
        for c in tmpl["spec"].get("containers") or []:
            sc = c.get("securityContext") or {}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != path:
                    errors.append(f"k8s: imgate container `{c['name']}` has no {probe} on {path}")
            limits = (c.get("resources") or {}).get("limits") or {}
            if not ("cpu" in limits and "memory" in limits):
                errors.append(f"k8s: imgate container `{c['name']}` has no cpu and memory limits")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"k8s: imgate container `{c['name']}` root file system is not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"k8s: imgate container `{c['name']}` allows privilege escalation")
            if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
                errors.append(f"k8s: imgate container `{c['name']}` may run as root")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"k8s: imgate container `{c['name']}` keeps Linux capabilities")

    # 5. imgate's Redis is reachable from imgate's pods only.
    imgate_pols = [p for p in policies if ns(p) == IMGATE_NS]
    redis_pols = [p for p in imgate_pols if labels_match(p["spec"].get("podSelector") or {}, REDIS_POD)]
    if not any(is_empty_selector(p["spec"].get("podSelector")) and "Ingress" in (p["spec"].get("policyTypes") or []) and not p["spec"].get("ingress") for p in imgate_pols):
        errors.append(f"k8s: no default-deny ingress NetworkPolicy in namespace `{IMGATE_NS}` (imgate's Redis would be open)")
    for p in redis_pols:
        for i, rule in enumerate(p["spec"].get("ingress") or []):
            peers = rule.get("from") or []
            ok = peers and all(set(peer) == {"podSelector"} and labels_match(peer["podSelector"], IMGATE_POD) and not is_empty_selector(peer["podSelector"]) for peer in peers)
            if not ok:
                errors.append(f"k8s: NetworkPolicy {IMGATE_NS}/{p['metadata']['name']} rule {i} admits more than imgate's pods to imgate's Redis")

    # 6. No real secret is shipped: every Secret value is a placeholder.
    for s in by_kind.get("Secret", []):
        values = dict(s.get("stringData") or {})
        values.update(s.get("data") or {})
        for k, v in values.items():
            if not str(v).startswith(PLACEHOLDER):
                errors.append(f"k8s: Secret {ns(s)}/{s['metadata']['name']} key {k} is not a `{PLACEHOLDER}` placeholder")

    # 7. imgate.toml in the ConfigMap keeps its secrets in files too.
    for cm in by_kind.get("ConfigMap", []):
        if "imgate.toml" in (cm.get("data") or {}):
            errors += check_imgate_toml(cm["data"]["imgate.toml"], f"k8s ConfigMap {cm['metadata']['name']} imgate.toml", text=True)
    return errors


# ---------------------------------------------------------------------------------------------
# The negative self-test: each mutation breaks one invariant; `check` must then fail naming it.


def _policy(objs, ns, name):
    return next(o for o in objs if o.get("kind") == "NetworkPolicy" and o["metadata"].get("namespace") == ns and o["metadata"]["name"] == name)


def _deployment(objs):
    return next(o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "imgate")


def _m_openim_ports(c, k):
    c["services"]["openim-server"]["ports"] = ["10002:10002"]


def _m_network_not_internal(c, k):
    c["networks"]["openim"]["internal"] = False


def _m_openim_on_public(c, k):
    c["services"]["openim-server"]["networks"] = ["openim", "public"]


def _m_host_network(c, k):
    svc = c["services"]["openim-server"]
    svc.pop("networks", None)
    svc["network_mode"] = "host"


def _m_secret_in_env(c, k):
    c["services"]["openim-server"]["environment"]["IMENV_SHARE_SECRET"] = "openIM123"


def _m_metrics_published(c, k):
    c["services"]["imgate-a"]["ports"].append("9090:9090")


def _m_openim_as_gateway(c, k):
    svc = c["services"]["openim-server"]
    svc["labels"][SIDE_LABEL] = "gateway"
    svc["ports"] = ["10002:10002"]


def _m_redis_on_public(c, k):
    c["services"]["imgate-redis"]["networks"] = ["imgate-state", "public"]


def _m_no_default_deny(c, k):
    k.remove(_policy(k, OPENIM_NS, "default-deny-ingress"))


def _m_open_rule(c, k):
    _policy(k, OPENIM_NS, "openim-from-imgate")["spec"]["ingress"][0].pop("from")


def _m_ipblock(c, k):
    _policy(k, OPENIM_NS, "openim-from-imgate")["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})


def _m_any_namespace(c, k):
    _policy(k, OPENIM_NS, "openim-from-imgate")["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}


def _m_any_pod(c, k):
    _policy(k, OPENIM_NS, "openim-from-imgate")["spec"]["ingress"][0]["from"][0]["podSelector"] = {}


def _m_extra_port(c, k):
    _policy(k, OPENIM_NS, "openim-from-imgate")["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 27017})


def _m_openim_nodeport(c, k):
    k.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "openim-api", "namespace": OPENIM_NS},
              "spec": {"type": "NodePort", "selector": {"app": "openim-api"}, "ports": [{"port": 10002, "targetPort": 10002}]}})


def _m_one_replica(c, k):
    _deployment(k)["spec"]["replicas"] = 1


def _m_writable_root(c, k):
    _deployment(k)["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False


def _m_pod_label(c, k):
    _deployment(k)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "gateway"


def _m_redis_open(c, k):
    _policy(k, IMGATE_NS, "imgate-redis")["spec"]["ingress"][0].pop("from")


def _m_real_secret(c, k):
    s = next(o for o in k if o.get("kind") == "Secret")
    s["stringData"][next(iter(s["stringData"]))] = "hunter2hunter2hunter2"


def _m_password_in_configmap(c, k):
    cm = next(o for o in k if o.get("kind") == "ConfigMap" and "imgate.toml" in (o.get("data") or {}))
    cm["data"]["imgate.toml"] = cm["data"]["imgate.toml"].replace("__REDIS_PASSWORD__", "s3cretpassw0rd")


# name → (function, a word the failure must contain); `schema-*` ones are for the schema checkers.
MUTATIONS = {
    "compose-openim-publishes-ports": (_m_openim_ports, "publishes ports"),
    "compose-openim-network-not-internal": (_m_network_not_internal, "internal"),
    "compose-openim-on-public-network": (_m_openim_on_public, "not internal"),
    "compose-openim-host-network": (_m_host_network, "network_mode"),
    "compose-secret-in-environment": (_m_secret_in_env, "secret in its environment"),
    "compose-metrics-published": (_m_metrics_published, "container port 9090"),
    "compose-openim-labelled-gateway": (_m_openim_as_gateway, "not built from deploy/Dockerfile"),
    "compose-imgate-redis-on-public": (_m_redis_on_public, "not internal"),
    "k8s-no-default-deny": (_m_no_default_deny, "default-deny"),
    "k8s-rule-without-from": (_m_open_rule, "from everywhere"),
    "k8s-ipblock-peer": (_m_ipblock, "ipBlock"),
    "k8s-any-namespace-peer": (_m_any_namespace, "other than imgate"),
    "k8s-any-pod-peer": (_m_any_pod, "other than imgate"),
    "k8s-extra-port": (_m_extra_port, "only 10001 and 10002"),
    "k8s-openim-nodeport": (_m_openim_nodeport, "NodePort"),
    "k8s-one-replica": (_m_one_replica, "fewer than 2"),
    "k8s-writable-root": (_m_writable_root, "not read-only"),
    "k8s-imgate-pod-label": (_m_pod_label, "lack the label"),
    "k8s-redis-open": (_m_redis_open, "imgate's Redis"),
    "k8s-real-secret": (_m_real_secret, "placeholder"),
    "k8s-password-in-configmap": (_m_password_in_configmap, "carries a password"),
}


def _m_schema_compose(c, k):
    c["services"]["imgate-a"]["portz"] = ["8080:8080"]


def _m_schema_k8s(c, k):
    d = _deployment(k)
    d["spec"]["replica"] = d["spec"].pop("replicas")


SCHEMA_MUTATIONS = {"schema-compose-unknown-key": _m_schema_compose, "schema-k8s-unknown-field": _m_schema_k8s}


def mutate(name, src, out):
    # Through JSON: YAML merge keys (<<: *anchor) share one dict between services; a mutation must touch one.
    compose = json.loads(json.dumps(yaml.safe_load(open(os.path.join(src, "compose", "compose.yaml"), encoding="utf-8"))))
    objs = load_k8s(os.path.join(src, "k8s"))
    fn = MUTATIONS[name][0] if name in MUTATIONS else SCHEMA_MUTATIONS[name]
    fn(compose, objs)
    os.makedirs(os.path.join(out, "compose"), exist_ok=True)
    os.makedirs(os.path.join(out, "k8s"), exist_ok=True)
    with open(os.path.join(out, "compose", "compose.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(compose, f, sort_keys=False)
    for name in ("imgate.toml", ".env.example"):
        with open(os.path.join(src, "compose", name), "rb") as f_in, open(os.path.join(out, "compose", name), "wb") as f_out:
            f_out.write(f_in.read())
    with open(os.path.join(out, "k8s", "manifests.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(objs, f, sort_keys=False)


# ---------------------------------------------------------------------------------------------


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "compose-schema":
        schema_path, compose_path, env_file = args
        schema = json.load(open(schema_path, encoding="utf-8"))
        doc = load_compose(compose_path, env_file)
        validator = jsonschema.Draft7Validator(schema)
        errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errs:
            print(f"{compose_path}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        return 1 if errs else 0
    if cmd == "check":
        (directory,) = args
        compose_dir = os.path.join(directory, "compose")
        env_file = os.path.join(compose_dir, ".env.example")
        errors = check_compose(load_compose(os.path.join(compose_dir, "compose.yaml"), env_file), os.path.join(compose_dir, "imgate.toml"))
        errors += check_k8s(load_k8s(os.path.join(directory, "k8s")))
        for e in errors:
            print(e)
        return 1 if errors else 0
    if cmd == "mutations":
        for name, (_, word) in MUTATIONS.items():
            print(f"{name}\t{word}")
        return 0
    if cmd == "mutate":
        mutate(*args)
        return 0
    if cmd == "configmap-toml":
        path, name, key, out = args
        for o in load_k8s(os.path.dirname(path)) if os.path.isdir(path) else list(yaml.safe_load_all(open(path, encoding="utf-8"))):
            if o and o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name:
                with open(out, "w", encoding="utf-8") as f:
                    f.write(o["data"][key])
                return 0
        print(f"{path}: no ConfigMap {name} with key {key}", file=sys.stderr)
        return 1
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
