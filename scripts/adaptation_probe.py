"""Probe (not part of the package): train on one mix of the scan's pairs and print, every fifth of the budget, the
protocol's PSNR of the new slices (the truth) beside the PSNR of each kind of the scan's own pairs. Scoring time is
not counted in the budget. Usage: probe.py VOLUME MODEL SOURCES LR SECONDS [THREADS]"""
import copy, json, sys, time
import numpy as np, torch
from misr_monai.adaptation import AdaptingPredictor, _Batches, _held_out_psnr, _validation_set, trainable_parameters, LAYERS
from misr_monai.io import load_volume
from misr_monai.metrics import score_reconstruction
from misr_monai.predictors.registry import load_predictor
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing
from misr_monai.volume import upsample_volume

torch.set_num_threads(int(sys.argv[6]) if len(sys.argv) > 6 else 2)
path, model, sources, lr, seconds = sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]), float(sys.argv[5])
truth, img = load_volume(path); axis = find_slice_axis(img.affine); sp = voxel_spacing(img.affine)
kept = np.take(truth, np.arange(0, truth.shape[axis], 2), axis=axis)
pred = load_predictor(model)
groups = AdaptingPredictor(pred, 1).pairs(np.moveaxis(kept, axis, 0), (2 * sp[axis], *[s for a, s in enumerate(sp) if a != axis]), 2, 0.0, sp[axis])
vals = {s: _validation_set([g for g in groups if g.source == s], every_pair=s not in sources) for s in ("through", "in_plane")}
net = copy.deepcopy(pred.network).train()
opt = torch.optim.Adam(trainable_parameters(net, LAYERS), lr=lr)
batches = iter(_Batches(groups, sources, 4, 64, 0))
def score():
    p = copy.copy(pred); p.network = net.eval()
    r = score_reconstruction(truth, upsample_volume(kept, axis, p, 2, 0.0), axis, 2)
    h = {s: _held_out_psnr(net, v, torch.device("cpu"), True) for s, v in vals.items() if v}
    net.train()
    return r["psnr"], h
p0, h0 = score(); rows = []
spent, it, nxt = 0.0, 0, seconds / 5
while spent < seconds:
    t = time.perf_counter(); b = next(batches)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.l1_loss(net(b["image"]).float(), b["label"])
    opt.zero_grad(); loss.backward(); opt.step(); it += 1
    spent += time.perf_counter() - t
    if spent >= nxt:
        nxt += seconds / 5
        p, h = score()
        rows.append({"seconds": round(spent), "iterations": it, "truth_gain": round(p - p0, 3),
                     **{f"{s}_gain": round(h[s] - h0[s], 3) for s in h}})
        print(json.dumps(rows[-1]), flush=True)
print(json.dumps({"volume": path, "model": model, "sources": sources, "truth_psnr": round(p0, 3), "rows": rows}))
