"""Figures and display images as pure functions of tensors (plotly and uint8 arrays).

Nothing here touches a model or Gradio: every function takes numbers and returns a
``plotly.graph_objects.Figure`` or an (H, W, 3) uint8 array, so each can be tested alone.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..models.architectures import CIFAR10_CLASSES

__all__ = [
    "model_color",
    "image_array",
    "perturbation_array",
    "prediction_bars",
    "attack_traces",
    "activation_heatmaps",
    "channel_grid",
    "robustness_curves",
    "claims_chart",
    "transfer_heatmap",
    "landscape_figure",
    "atlas_figure",
    "message_figure",
]

_COLORS = {"relu": "#1f77b4", "kwta-0.2": "#ff7f0e", "kwta-0.1": "#d62728"}
_FALLBACK = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=40))


def model_color(name: str) -> str:
    """A fixed colour per variant (ReLU blue, gamma 0.2 orange, gamma 0.1 red)."""
    for suffix, color in _COLORS.items():
        if name.endswith(suffix):
            return color
    return _FALLBACK[sum(map(ord, name)) % len(_FALLBACK)]


def _numpy(x: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def image_array(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) floats in [0, 1] as an (H, W, 3) uint8 array (round to nearest)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    return (image.detach().cpu().clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def perturbation_array(delta: torch.Tensor) -> tuple[np.ndarray, float]:
    """The perturbation (3, H, W) amplified to fill the display range, and its scale.

    Mid-gray is zero; full white or black is +/- the returned scale (max |delta|), so
    the amplification factor is 0.5 / scale. A zero perturbation gives flat gray and 0.
    """
    scale = float(delta.detach().abs().max()) if delta.numel() else 0.0
    shown = 0.5 + delta.detach().cpu() / (2 * scale) if scale > 0 else torch.full_like(delta.cpu(), 0.5)
    return image_array(shown), scale


def message_figure(text: str, height: int = 260) -> go.Figure:
    """An empty figure that says ``text`` (for 'nothing to show yet' and errors)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14))
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), height=height, **_LAYOUT)
    return fig


def prediction_bars(
    clean_probs: torch.Tensor | np.ndarray,
    adv_probs: torch.Tensor | np.ndarray,
    *,
    true_label: int | None = None,
    target: int | None = None,
    classes: Sequence[str] = CIFAR10_CLASSES,
    title: str = "",
) -> go.Figure:
    """Grouped bars of clean vs adversarial class probabilities; true/target classes marked."""
    clean, adv = _numpy(clean_probs).ravel(), _numpy(adv_probs).ravel()
    if clean.shape != (len(classes),) or adv.shape != (len(classes),):
        raise ValueError(f"expected {len(classes)} probabilities each, got {clean.shape} and {adv.shape}")
    labels = list(classes)
    if true_label is not None:
        labels[true_label] = f"<b>{labels[true_label]}</b> (true)"
    if target is not None:
        labels[target] = f"{labels[target]} (target)"
    fig = go.Figure([
        go.Bar(name="clean", x=labels, y=clean.tolist(), marker_color="#7f7f7f"),
        go.Bar(name="adversarial", x=labels, y=adv.tolist(), marker_color="#d62728"),
    ])
    fig.update_layout(
        barmode="group", title=title, yaxis=dict(title="probability", range=[0, 1]),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        height=320, **_LAYOUT,
    )
    fig.update_xaxes(tickangle=-45)
    return fig


def attack_traces(
    true_prob: Mapping[str, torch.Tensor | np.ndarray],
    loss: Mapping[str, torch.Tensor | np.ndarray],
    *,
    title: str = "Along the attack",
) -> go.Figure:
    """True-class probability (shown first) and loss per attack step, one line per model.

    Buttons switch between the two. ReLU gives a smooth descent; k-WTA a jagged one,
    the visual signature of gradient masking.
    """
    fig = go.Figure()
    names = list(true_prob)
    for name in names:
        y = _numpy(true_prob[name]).ravel()
        fig.add_trace(go.Scatter(x=list(range(len(y))), y=y.tolist(), mode="lines+markers", name=name,
                                 marker=dict(size=4), line=dict(color=model_color(name))))
    for name in names:
        y = _numpy(loss[name]).ravel()
        fig.add_trace(go.Scatter(x=list(range(len(y))), y=y.tolist(), mode="lines+markers", name=name,
                                 marker=dict(size=4), line=dict(color=model_color(name)),
                                 visible=False))
    n = len(names)
    buttons = [
        dict(label="true-class probability", method="update",
             args=[{"visible": [True] * n + [False] * n},
                   {"yaxis": {"title": {"text": "true-class probability"}, "range": [0, 1]}}]),
        dict(label="loss", method="update",
             args=[{"visible": [False] * n + [True] * n},
                   {"yaxis": {"title": {"text": "loss"}, "autorange": True}}]),
    ]
    fig.update_layout(
        title=title, xaxis=dict(title="attack step"),
        yaxis=dict(title="true-class probability", range=[0, 1]),
        updatemenus=[dict(type="buttons", direction="right", buttons=buttons,
                          x=1, y=1.02, xanchor="right", yanchor="bottom", showactive=True)],
        height=380, **_LAYOUT,
    )
    fig.update_layout(margin=dict(t=80))
    return fig


def _as_map(activation: np.ndarray) -> np.ndarray:
    """A 2-D picture of one sample's activation: channel sum of |a| for (C, H, W), a grid for (F,)."""
    if activation.ndim == 3:
        return np.abs(activation).sum(axis=0)
    if activation.ndim == 1:
        side = math.ceil(math.sqrt(activation.size))
        grid = np.full(side * side, np.nan)
        grid[: activation.size] = np.abs(activation)
        return grid.reshape(side, side)
    raise ValueError(f"expected a (C, H, W) or (F,) activation, got shape {activation.shape}")


def activation_heatmaps(
    maps: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    *,
    layer: str = "",
) -> go.Figure:
    """Rows: models; columns: clean, adversarial. Each cell: sum over channels of |activation|.

    Both cells of a row share one colour scale, so a change in magnitude shows.
    """
    names = list(maps)
    if not names:
        return message_figure("No activations to show")
    titles = [f"{n}: {kind}" for n in names for kind in ("clean", "adversarial")]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles,
                        horizontal_spacing=0.08, vertical_spacing=0.08)
    for row, name in enumerate(names, start=1):
        clean, adv = (_as_map(_numpy(a)) for a in maps[name])
        zmax = float(np.nanmax([np.nanmax(clean), np.nanmax(adv), 1e-12]))
        for col, z in ((1, clean), (2, adv)):
            fig.add_trace(go.Heatmap(z=z[::-1].tolist(), zmin=0, zmax=zmax, colorscale="Viridis",
                                     showscale=col == 2, colorbar=dict(len=1 / len(names),
                                     y=1 - (row - 0.5) / len(names), thickness=10)),
                          row=row, col=col)
    _square_cells(fig, len(names))
    fig.update_layout(title=f"Channel-summed |activation| at {layer}" if layer else None,
                      height=260 * len(names) + 60, **_LAYOUT)
    return fig


def _square_cells(fig: go.Figure, rows: int) -> None:
    """Hide the axes and keep each cell's pixels square (each y axis anchored to its own x)."""
    fig.update_xaxes(visible=False)
    for i in range(1, 2 * rows + 1):
        fig.update_layout({f"yaxis{'' if i == 1 else i}": dict(
            visible=False, scaleanchor=f"x{'' if i == 1 else i}", constrain="domain")})
        fig.update_layout({f"xaxis{'' if i == 1 else i}": dict(constrain="domain")})


def _mosaic(activation: np.ndarray, channels: np.ndarray, columns: int) -> np.ndarray:
    """Tile the chosen channels of (C, H, W) into one image, NaN gutters between tiles."""
    _, h, w = activation.shape
    rows = math.ceil(len(channels) / columns)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for i, c in enumerate(channels):
        r, q = divmod(i, columns)
        out[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = activation[c]
    return out


def channel_grid(
    maps: Mapping[str, tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
    *,
    n_channels: int = 16,
    layer: str = "",
) -> go.Figure:
    """Rows: models; columns: clean, adversarial. Each cell: the ``n_channels`` channels with
    the largest clean activation, tiled. Zero (a loser, or a negative ReLU input) is dark.

    A fully connected layer has no channels: its units are shown as one square instead.
    """
    names = list(maps)
    if not names:
        return message_figure("No activations to show")
    titles = [f"{n}: {kind}" for n in names for kind in ("clean", "adversarial")]
    fig = make_subplots(rows=len(names), cols=2, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.08)
    for row, name in enumerate(names, start=1):
        clean, adv = (_numpy(a) for a in maps[name])
        if clean.ndim == 3:
            k = min(n_channels, clean.shape[0])
            top = np.argsort(-np.abs(clean).reshape(clean.shape[0], -1).sum(axis=1), kind="stable")[:k]
            columns = math.ceil(math.sqrt(k))
            cells = (_mosaic(clean, top, columns), _mosaic(adv, top, columns))
        else:
            cells = (_as_map(clean), _as_map(adv))
        zmax = float(np.nanmax([np.nanmax(np.abs(c)) for c in cells] + [1e-12]))
        for col, z in zip((1, 2), cells):
            fig.add_trace(go.Heatmap(z=np.abs(z)[::-1].tolist(), zmin=0, zmax=zmax, colorscale="Magma",
                                     showscale=False), row=row, col=col)
    _square_cells(fig, len(names))
    what = f"top {n_channels} channels by clean activation" + (f" at {layer}" if layer else "")
    fig.update_layout(title=what, height=260 * len(names) + 60, **_LAYOUT)
    return fig


def robustness_curves(
    eps: Sequence[float],
    accuracy: Mapping[str, Sequence[float]],
    *,
    title: str = "Accuracy under attack",
    n: int | None = None,
) -> go.Figure:
    """Accuracy (0..1) vs epsilon (in 1/255 units), one line per model."""
    x = list(eps)
    fig = go.Figure()
    for name, acc in accuracy.items():
        y = list(acc)
        fig.add_trace(go.Scatter(x=x[: len(y)], y=y, mode="lines+markers", name=name,
                                 line=dict(color=model_color(name))))
    subtitle = f" ({n} test images)" if n else ""
    fig.update_layout(title=title + subtitle, xaxis=dict(title="epsilon (x/255, L-inf)"),
                      yaxis=dict(title="accuracy", range=[0, 1.02]), height=420, **_LAYOUT)
    return fig


def claims_chart(claims: Sequence) -> go.Figure:
    """Robust accuracy claimed and measured for k-WTA models, one bar each, grouped by model,
    with the ReLU twin's figure under the same attack beside ours (a marker); hovering a bar
    shows its source and conditions. ``claims``: ``reporting.claims.Claim``s."""
    fig = go.Figure()
    labels = [f"{c.group}<br>{c.label}" for c in claims]
    errors = [(c.value - c.ci95[0], c.ci95[1] - c.value) if c.ci95 else (0.0, 0.0) for c in claims]
    colors = ["#7f7f7f" if not c.label.startswith("ours") else "#d62728" for c in claims]
    fig.add_trace(go.Bar(
        x=[c.value for c in claims], y=labels, orientation="h", marker_color=colors,
        error_x=dict(type="data", symmetric=False, array=[e[1] for e in errors],
                     arrayminus=[e[0] for e in errors]),
        customdata=[[c.source, c.conditions] for c in claims], showlegend=False,
        hovertemplate="%{x:.2f}%<br>%{customdata[0]}<br>%{customdata[1]}<extra></extra>",
    ))
    # the figures past the error bars, where the bars' own labels would sit under them
    fig.add_trace(go.Scatter(
        x=[c.value + e[1] + 1.0 for c, e in zip(claims, errors)], y=labels, mode="text",
        text=[f"{c.value:.1f}%" for c in claims], textposition="middle right",
        hoverinfo="skip", showlegend=False))
    twins = [(label, c.relu) for label, c in zip(labels, claims) if c.relu is not None]
    if twins:
        fig.add_trace(go.Scatter(
            x=[v for _, v in twins], y=[label for label, _ in twins], mode="markers",
            marker=dict(symbol="diamond", size=11, color=model_color("relu"),
                        line=dict(width=1, color="white")),
            name="the ReLU twin, same attack and images",
            hovertemplate="ReLU twin: %{x:.2f}%<extra></extra>"))
    fig.update_layout(title="Robust accuracy of k-WTA models at eps 0.031: claimed vs measured",
                      xaxis=dict(title="robust accuracy (%)", range=[0, 105]),
                      yaxis=dict(autorange="reversed"), height=130 + 34 * len(claims),
                      showlegend=bool(twins), legend=dict(orientation="h", x=1, xanchor="right",
                                                          y=1.0, yanchor="bottom"),
                      **_LAYOUT)
    return fig


def transfer_heatmap(matrix) -> go.Figure:
    """Share of images each source's examples fool each target on (``transfer.TransferMatrix``)."""
    z = [[None if math.isnan(v) else 100 * v for v in row] for row in matrix.rates]
    text = [[("n/a" if math.isnan(v) else f"{100 * v:.0f}%") for v in row] for row in matrix.rates]
    ci = [[f"[{100 * lo:.0f}–{100 * hi:.0f}%]" for lo, hi in row] for row in matrix.ci95]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(matrix.targets), y=list(matrix.sources), text=text, texttemplate="%{text}",
        customdata=ci, zmin=0, zmax=100, colorscale="Reds", colorbar=dict(title="fooled %"),
        hovertemplate="examples of %{y}<br>tried on %{x}: %{text} %{customdata}<extra></extra>",
    ))
    sizes = ", ".join(f"{t}: {k}" for t, k in zip(matrix.targets, matrix.n))
    fig.update_layout(
        title=f"Transfer: {matrix.attack} {matrix.preset} examples (rows) on each model "
              f"(columns), eps {matrix.eps:.4g}<br><sup>images each model gets right: {sizes}</sup>",
        xaxis=dict(title="target model"), yaxis=dict(title="examples crafted on", autorange="reversed"),
        height=140 + 60 * len(matrix.sources), **_LAYOUT)
    return fig


_DIRECTION_DASH = {"gradient sign": "solid", "random": "dot", "attack": "dash"}


def landscape_figure(lines: Mapping[str, Mapping[str, object]], planes: Mapping[str, torch.Tensor],
                     radius: float) -> go.Figure:
    """Per model (a row): the loss along each direction, the mean winner change of its
    k-WTA layers along the gradient sign, and the loss on the gradient-sign x random plane.
    ``lines``: model -> direction -> ``landscape.Slice``; ``planes``: model -> (P, P) loss."""
    names = list(lines)
    fig = make_subplots(rows=len(names), cols=3, horizontal_spacing=0.08, vertical_spacing=0.12,
                        subplot_titles=[t for n in names for t in (
                            f"{n}: loss along each direction", f"{n}: winners changed",
                            f"{n}: loss, gradient sign x random")])
    for row, name in enumerate(names, start=1):
        for direction, sl in lines[name].items():
            fig.add_trace(go.Scatter(x=list(sl.alphas), y=list(sl.loss), mode="lines",
                                     name=f"{name}: {direction}", legendgroup=name,
                                     line=dict(color=model_color(name),
                                               dash=_DIRECTION_DASH.get(direction, "solid"))),
                          row=row, col=1)
        grad = lines[name].get("gradient sign")
        if grad is not None and grad.hamming:
            layers = list(grad.hamming.values())
            mean = [sum(v[i] for v in layers) / len(layers) for i in range(len(grad.alphas))]
            fig.add_trace(go.Scatter(x=list(grad.alphas), y=mean, mode="lines", showlegend=False,
                                     line=dict(color=model_color(name))), row=row, col=2)
        else:
            # in paper coordinates: the browser's plotly.js may not know "x2 domain" refs
            cell = fig.get_subplot(row, 2)
            fig.add_annotation(text="no k-WTA layers: no winners to change", showarrow=False,
                               xref="paper", yref="paper", x=sum(cell.xaxis.domain) / 2,
                               y=sum(cell.yaxis.domain) / 2)
        plane = planes[name]
        axis = torch.linspace(-radius, radius, plane.shape[0]).tolist()
        fig.add_trace(go.Heatmap(z=plane.tolist(), x=axis, y=axis, colorscale="Viridis",
                                 showscale=False), row=row, col=3)
        fig.update_xaxes(title_text="L-inf step along the direction", row=row, col=1)
        fig.update_yaxes(title_text="cross-entropy", row=row, col=1)
        fig.update_xaxes(title_text="step along the gradient sign", row=row, col=2)
        fig.update_yaxes(title_text="share of k-WTA units flipped", row=row, col=2)
    fig.update_layout(height=300 * len(names) + 80, title="Loss landscape around the image "
                      "(solid: gradient sign, dotted: random, dashed: the attack's direction)",
                      **_LAYOUT)
    return fig


def atlas_figure(atlases: Mapping[str, Mapping[str, object]]) -> go.Figure:
    """Per model: the true-class probability along the attack over a heat map of layers x
    steps, the share of the clean image's active units (k-WTA: winners) switched off."""
    names = list(atlases)
    fig = make_subplots(rows=2 * len(names), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[1, 2] * len(names),
                        subplot_titles=[t for n in names for t in (
                            f"{n}: true-class probability", f"{n}: clean winners switched off")])
    for i, name in enumerate(names):
        a = atlases[name]
        steps = list(range(len(a["shares"])))
        probs = list(a["true_prob"])
        fig.add_trace(go.Scatter(x=steps[: len(probs)] if a["per_step"] else [0, steps[-1]],
                                 y=probs, mode="lines+markers", name=name,
                                 line=dict(color=model_color(name))), row=2 * i + 1, col=1)
        z = [[100 * (v if v == v else 0.0) for v in col] for col in zip(*a["shares"])]
        fig.add_trace(go.Heatmap(z=z, x=steps, y=list(a["layers"]), zmin=0, zmax=100,
                                 colorscale="Reds", showscale=i == 0,
                                 colorbar=dict(title="% switched off", len=0.3)),
                      row=2 * i + 2, col=1)
        fig.update_yaxes(range=[0, 1.02], row=2 * i + 1, col=1)
    fig.update_xaxes(title_text="attack iterate (0: the start)", row=2 * len(names), col=1)
    fig.update_layout(height=420 * len(names) + 60, showlegend=False,
                      title="Winner-flip atlas: where and when the attack bites the sparse code",
                      **_LAYOUT)
    return fig
