"""ComfyUI's two graph formats and the nodes Handoff understands.

The API format (the `prompt` chunk) is `{id: {"class_type", "inputs": {name: value or
[source id, output slot]}}}`. The UI format (the `workflow` chunk) lists `nodes`, each
with its widget values in order (`widgets_values`) and its linked inputs, and `links` as
`[id, from node, from slot, to node, to slot, type]`. Both are turned into one `Graph`
here, using each understood class's widget order (the order ComfyUI's INPUT_TYPES
declares; a seed widget is followed by the frontend's `control_after_generate`), and a
Graph is written back as either format.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.interop.reading import Where

SEED_CONTROL = ("fixed", "increment", "decrement", "randomize")
# The title Handoff gives the ImageUpscaleWithModel of an upscale stage (a model upscale
# alone) that has no name of its own; any title other than the class's own marks one.
UPSCALE_STAGE_TITLE = "Upscale stage"
UPSCALE_DEFAULT_TITLES = {"", "ImageUpscaleWithModel", "Upscale Image (using Model)"}


@dataclass(frozen=True)
class NodeType:
    widgets: tuple[str, ...] = ()  # widget inputs, in the UI's widgets_values order
    links: tuple[tuple[str, str], ...] = ()  # (input name, type) of linked inputs
    outputs: tuple[str, ...] = ()  # output types, by slot
    seed: str | None = None  # the widget followed by control_after_generate
    ui_only: tuple[tuple[str, Any], ...] = ()  # widgets the frontend keeps that are no input (LoadImage's upload)


NODE_TYPES: dict[str, NodeType] = {
    "CheckpointLoaderSimple": NodeType(("ckpt_name",), (), ("MODEL", "CLIP", "VAE")),
    "CheckpointLoader": NodeType(("config_name", "ckpt_name"), (), ("MODEL", "CLIP", "VAE")),
    "UnetLoaderGGUF": NodeType(("unet_name",), (), ("MODEL",)),
    "CLIPLoader": NodeType(("clip_name", "type", "device"), (), ("CLIP",)),
    "DualCLIPLoader": NodeType(("clip_name1", "clip_name2", "type", "device"), (), ("CLIP",)),
    "TripleCLIPLoader": NodeType(("clip_name1", "clip_name2", "clip_name3"), (), ("CLIP",)),
    "UpscaleModelLoader": NodeType(("model_name",), (), ("UPSCALE_MODEL",)),
    "ImageUpscaleWithModel": NodeType((), (("upscale_model", "UPSCALE_MODEL"), ("image", "IMAGE")), ("IMAGE",)),
    "Canny": NodeType(("low_threshold", "high_threshold"), (("image", "IMAGE"),), ("IMAGE",)),
    "DiffusersLoader": NodeType(("model_path",), (), ("MODEL", "CLIP", "VAE")),
    "UNETLoader": NodeType(("unet_name", "weight_dtype"), (), ("MODEL",)),
    "CLIPTextEncode": NodeType(("text",), (("clip", "CLIP"),), ("CONDITIONING",)),
    "CLIPTextEncodeSDXL": NodeType(("width", "height", "crop_w", "crop_h", "target_width", "target_height",
                                    "text_g", "text_l"), (("clip", "CLIP"),), ("CONDITIONING",)),
    "CLIPTextEncodeSDXLRefiner": NodeType(("ascore", "width", "height", "text"), (("clip", "CLIP"),),
                                          ("CONDITIONING",)),
    "EmptyLatentImage": NodeType(("width", "height", "batch_size"), (), ("LATENT",)),
    "EmptySD3LatentImage": NodeType(("width", "height", "batch_size"), (), ("LATENT",)),
    "KSampler": NodeType(("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"),
                         (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                          ("latent_image", "LATENT")), ("LATENT",), seed="seed"),
    "KSamplerAdvanced": NodeType(("add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
                                  "start_at_step", "end_at_step", "return_with_leftover_noise"),
                                 (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                  ("latent_image", "LATENT")), ("LATENT",), seed="noise_seed"),
    "LatentUpscale": NodeType(("upscale_method", "width", "height", "crop"), (("samples", "LATENT"),), ("LATENT",)),
    "LatentUpscaleBy": NodeType(("upscale_method", "scale_by"), (("samples", "LATENT"),), ("LATENT",)),
    "ImageScale": NodeType(("upscale_method", "width", "height", "crop"), (("image", "IMAGE"),), ("IMAGE",)),
    "ImageScaleBy": NodeType(("upscale_method", "scale_by"), (("image", "IMAGE"),), ("IMAGE",)),
    "VAEDecode": NodeType((), (("samples", "LATENT"), ("vae", "VAE")), ("IMAGE",)),
    "VAEEncode": NodeType((), (("pixels", "IMAGE"), ("vae", "VAE")), ("LATENT",)),
    "LoraLoader": NodeType(("lora_name", "strength_model", "strength_clip"), (("model", "MODEL"), ("clip", "CLIP")),
                           ("MODEL", "CLIP")),
    "LoraLoaderModelOnly": NodeType(("lora_name", "strength_model"), (("model", "MODEL"),), ("MODEL",)),
    "ControlNetApply": NodeType(("strength",), (("conditioning", "CONDITIONING"), ("control_net", "CONTROL_NET"),
                                                ("image", "IMAGE")), ("CONDITIONING",)),
    "ControlNetApplyAdvanced": NodeType(("strength", "start_percent", "end_percent"),
                                        (("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                         ("control_net", "CONTROL_NET"), ("image", "IMAGE"), ("vae", "VAE")),
                                        ("CONDITIONING", "CONDITIONING")),
    "ControlNetLoader": NodeType(("control_net_name",), (), ("CONTROL_NET",)),
    "VAELoader": NodeType(("vae_name",), (), ("VAE",)),
    "LoadImage": NodeType(("image", "upload"), (), ("IMAGE", "MASK"), ui_only=(("upload", "image"),)),
    "SaveImage": NodeType(("filename_prefix",), (("images", "IMAGE"),), ()),
    "PreviewImage": NodeType((), (("images", "IMAGE"),), ()),
    "CLIPSetLastLayer": NodeType(("stop_at_clip_layer",), (("clip", "CLIP"),), ("CLIP",)),
    "ConditioningZeroOut": NodeType((), (("conditioning", "CONDITIONING"),), ("CONDITIONING",)),
}


@dataclass(frozen=True)
class Link:
    node: str
    slot: int


@dataclass
class Node:
    id: str
    class_type: str
    inputs: dict[str, Any] = field(default_factory=dict)  # name -> literal value or Link
    title: str = ""
    muted: bool = False  # UI mode 2 (never) or 4 (bypass): not part of the run


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    format: str = "api"  # "api" or "ui": what it was read from
    unmapped: list[str] = field(default_factory=list)  # what the conversion itself could not read
    # A written graph's files, by the name its loaders take, with what each is; and what
    # the user must do before ComfyUI can run it (files only Handoff has, downloads).
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def from_api(data: Any, where: Where) -> Graph:
    data = where.table(data, "the graph")
    graph = Graph(format="api")
    for key, raw in data.items():
        node_where = where.at(f"node {key}")
        raw = node_where.table(raw, "entry")
        class_type = node_where.text(raw.get("class_type"), "class_type")
        inputs = node_where.table(raw.get("inputs", {}), "inputs")
        parsed: dict[str, Any] = {}
        for name, value in inputs.items():
            if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
                    and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool)):
                parsed[name] = Link(str(value[0]), value[1])
            else:
                parsed[name] = value
        meta = raw.get("_meta")
        title = meta.get("title", "") if isinstance(meta, dict) and isinstance(meta.get("title"), str) else ""
        graph.nodes[str(key)] = Node(str(key), class_type, parsed, title)
    return graph


def from_ui(data: Any, where: Where) -> Graph:
    """The UI workflow as the graph the API format would hold: widget values named by the
    class's widget order, links resolved through Reroute and Primitive nodes."""
    data = where.table(data, "the workflow")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list):
        raise where.error("'nodes'", "is missing or not a list")
    links: dict[int, tuple[str, int]] = {}
    for i, raw in enumerate(data.get("links") or []):
        if isinstance(raw, list) and len(raw) >= 5:
            link_id, src, slot = raw[0], raw[1], raw[2]
        elif isinstance(raw, dict):  # the newer frontend's object links
            link_id, src, slot = raw.get("id"), raw.get("origin_id"), raw.get("origin_slot")
        else:
            raise where.error(f"link {i + 1}", "is neither a list nor an object")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (link_id, src, slot)):
            raise where.error(f"link {i + 1}", "does not name its id, source node and slot as numbers")
        links[link_id] = (str(src), slot)
    graph = Graph(format="ui")
    primitive: dict[str, Any] = {}
    reroute: dict[str, int | None] = {}
    for i, raw in enumerate(raw_nodes):
        node_where = where.at(f"node {i + 1}")
        raw = node_where.table(raw, "entry")
        node_id = raw.get("id")
        if not isinstance(node_id, (int, str)) or isinstance(node_id, bool):
            raise node_where.error("'id'", "is missing")
        node_id = str(node_id)
        class_type = node_where.text(raw.get("type"), "'type'")
        widgets = raw.get("widgets_values", [])
        if class_type in ("PrimitiveNode", "PrimitiveString", "PrimitiveInt", "PrimitiveFloat"):
            primitive[node_id] = widgets[0] if isinstance(widgets, list) and widgets else (
                widgets.get("value") if isinstance(widgets, dict) else None)
            continue
        linked: dict[str, int | None] = {}
        for j, inp in enumerate(raw.get("inputs") or []):
            if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
                raise node_where.error(f"input {j + 1}", "has no name")
            link = inp.get("link")
            if link is not None and (not isinstance(link, int) or isinstance(link, bool)):
                raise node_where.error(f"input '{inp['name']}'", f"names link {link!r}, not a link number")
            linked[inp["name"]] = link
        if class_type == "Reroute":
            reroute[node_id] = next(iter(linked.values()), None)
            continue
        inputs = _widget_inputs(class_type, widgets, node_where, graph)
        for name, link in linked.items():
            if link is not None:
                inputs[name] = ("link", link)
        mode = raw.get("mode", 0)
        title = raw.get("title") if isinstance(raw.get("title"), str) else ""
        graph.nodes[node_id] = Node(node_id, class_type, inputs, title, muted=mode in (2, 4))

    def resolve(link_id: int, depth: int = 0) -> Any:
        if link_id not in links or depth > 64:
            raise where.error(f"link {link_id}", "is used by a node but not listed in 'links'")
        src, slot = links[link_id]
        if src in primitive:
            return primitive[src]
        if src in reroute:
            upstream = reroute[src]
            if upstream is None:
                raise where.error(f"reroute node {src}", "has no input")
            return resolve(upstream, depth + 1)
        return Link(src, slot)

    for node in graph.nodes.values():
        for name, value in list(node.inputs.items()):
            if isinstance(value, tuple) and len(value) == 2 and value[0] == "link":
                node.inputs[name] = resolve(value[1])
    if isinstance(data.get("definitions"), dict) and data["definitions"].get("subgraphs"):
        graph.unmapped.append("subgraphs (grouped nodes): their insides were not read")
    return graph


def _widget_inputs(class_type: str, widgets: Any, where: Where, graph: Graph) -> dict[str, Any]:
    if isinstance(widgets, dict):  # some custom nodes store named widget values
        return dict(widgets)
    if not isinstance(widgets, list):
        raise where.error("'widgets_values'", "is not a list")
    kind = NODE_TYPES.get(class_type)
    if kind is None:
        return {f"widget {n + 1}": v for n, v in enumerate(widgets)}
    values = list(widgets)
    out: dict[str, Any] = {}
    ui_only = dict(kind.ui_only)
    for name in kind.widgets:
        if not values:
            break
        value = values.pop(0)
        if name not in ui_only:
            out[name] = value
        if name == kind.seed and values and values[0] in SEED_CONTROL:
            values.pop(0)  # the frontend's control_after_generate, not an input
    return out


# ---------------------------------------------------------------- writing


def to_api(graph: Graph) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in graph.nodes.values():
        inputs = {k: ([v.node, v.slot] if isinstance(v, Link) else v) for k, v in node.inputs.items()}
        entry: dict[str, Any] = {"inputs": inputs, "class_type": node.class_type}
        if node.title:
            entry["_meta"] = {"title": node.title}
        out[node.id] = entry
    return out


def to_ui(graph: Graph) -> dict[str, Any]:
    """The graph as a workflow ComfyUI's frontend loads: nodes laid out in columns by their
    depth in the graph, widget values in each class's order, every link listed."""
    ids = {nid: n + 1 for n, nid in enumerate(graph.nodes)}
    depth = _depths(graph)
    links: list[list[Any]] = []
    outputs: dict[tuple[str, int], list[int]] = {}
    node_inputs: dict[str, list[dict]] = {nid: [] for nid in graph.nodes}
    for nid, node in graph.nodes.items():
        kind = NODE_TYPES[node.class_type]
        types = dict(kind.links)
        for name, value in node.inputs.items():
            if not isinstance(value, Link):
                continue
            src = graph.nodes[value.node]
            link_type = NODE_TYPES[src.class_type].outputs[value.slot]
            link_id = len(links) + 1
            links.append([link_id, ids[value.node], value.slot, ids[nid], len(node_inputs[nid]), link_type])
            node_inputs[nid].append({"name": name, "type": types.get(name, link_type), "link": link_id})
            outputs.setdefault((value.node, value.slot), []).append(link_id)
    column_rows: dict[int, int] = {}
    nodes = []
    for order, (nid, node) in enumerate(sorted(graph.nodes.items(), key=lambda kv: (depth[kv[0]], ids[kv[0]]))):
        kind = NODE_TYPES[node.class_type]
        widgets: list[Any] = []
        ui_only = dict(kind.ui_only)
        for name in kind.widgets:
            if name in node.inputs and not isinstance(node.inputs[name], Link):
                widgets.append(node.inputs[name])
                if name == kind.seed:
                    widgets.append("fixed")
            elif name in ui_only:
                widgets.append(ui_only[name])
        row = column_rows.get(depth[nid], 0)
        column_rows[depth[nid]] = row + 1
        entry: dict[str, Any] = {
            "id": ids[nid], "type": node.class_type, "pos": [40 + 360 * depth[nid], 40 + 260 * row],
            "size": [320, 200 if node.class_type.startswith("CLIPTextEncode") else 120], "flags": {}, "order": order,
            "mode": 0, "inputs": node_inputs[nid],
            "outputs": [{"name": t, "type": t, "links": outputs.get((nid, slot), []), "slot_index": slot}
                        for slot, t in enumerate(kind.outputs)],
            "properties": {"Node name for S&R": node.class_type}, "widgets_values": widgets,
        }
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)
    return {"last_node_id": len(ids), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"handoff": "written by Handoff"}, "version": 0.4}


def _depths(graph: Graph) -> dict[str, int]:
    memo: dict[str, int] = {}

    def depth(nid: str, seen: frozenset = frozenset()) -> int:
        if nid in memo:
            return memo[nid]
        ups = [v.node for v in graph.nodes[nid].inputs.values() if isinstance(v, Link) and v.node not in seen]
        memo[nid] = 0 if not ups else 1 + max(depth(u, seen | {nid}) for u in ups)
        return memo[nid]

    return {nid: depth(nid) for nid in graph.nodes}
