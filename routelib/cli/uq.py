"""Uncertainty: ``uq``, ``auroc``, ``probe``, ``import-outputs``."""
from __future__ import annotations

from routelib import config
from routelib.cli import options as o

UQ_DESCRIPTION = (
    "Answer items (cached), run the model passes the UQ methods need (each once per item, "
    "cached under $ROUTELIB_CACHE_DIR/stats/), and save the tidy confidence table to "
    "$ROUTELIB_CACHE_DIR/confidence/<model>__n<limit>.parquet. Interrupted runs resume. "
    "Cost: avg_token_prob and perplexity come with the answers; p_true, verbal_1s, verbal_2s "
    "and jaccard_degree (5 samples) each need one more pass over the evaluation items, the "
    "probes the hidden states, and the probes also need the answers and hidden states of "
    "--train-limit train-split items: of the evaluated datasets for trained_probe, of all 14 "
    "datasets for ood_probe (part of 'all'), whatever --dataset says. So a first run on one "
    "small dataset can take hours on a CPU. Before it starts, uq prints what is not cached yet "
    "and a rough time from the cache's stored timings; --dry-run prints only that.")


def _uq_backend(args, model: str):
    """(the backend or its lazy factory, the label the table is saved under: another engine's
    table is never mixed with the in-process transformers model's)."""
    from routelib.models.factory import lazy_backend
    served = o.slm_endpoint_backend(args, model)
    if served is not None:
        return served, f"{model}-endpoint"
    engine = o.engine_backend(args, model)
    if engine is not None:
        return engine, f"{model}-vllm"
    return lazy_backend(model, args.batch_size), model


def _plan_model_id(args, model: str) -> str | None:
    from routelib.models import registry
    from routelib.models.endpoint_slm import ENGINE
    if args.slm_base_url:
        return f"{ENGINE}:{args.slm_base_url.rstrip('/')}:{args.slm_model or model}"
    if args.engine == "vllm":
        from routelib.models.vllm_backend import MODEL_ID_SUFFIX
        return registry.model_id(model) + MODEL_ID_SUFFIX
    return None


def cmd_uq(args) -> int:
    import pandas as pd
    from routelib import data
    from routelib.cli import uq_plan
    from routelib.uq import confidence, metrics
    datasets = data.iter_datasets(args.dataset)
    methods = o.check_methods(args.method, "--method")
    o.check_slm_endpoint(args, methods)
    if args.slm_base_url and len(args.model) != 1:
        raise o.CliError("--slm-base-url serves one SLM: give one --model (its name)")
    if not args.slm_base_url:
        o.check_models(args.model)
    if args.slm_base_url and args.engine != "transformers":
        raise o.CliError("--slm-base-url and --engine exclude each other (the server is the "
                         "engine)")
    for model in args.model:
        plans = uq_plan.make_plan(model, datasets, methods, o.limit_arg(args),
                                  args.train_limit or None, args.source,
                                  model_id=_plan_model_id(args, model))
        print("\n".join(uq_plan.describe(plans, model, methods)), flush=True)
        if args.dry_run:
            continue
        backend, label = _uq_backend(args, model)
        table = confidence.confidence_table(model, datasets, methods, limit=o.limit_arg(args),
                                            train_limit=args.train_limit or None,
                                            backend=backend, source=args.source)
        path = confidence.table_path(label, o.limit_arg(args))
        saved = confidence.save_table(confidence.merge_into_saved(table, path), path)
        print(f"wrote {saved} ({len(table)} rows of this run, "
              f"{len(pd.read_parquet(saved))} in all)")
        if "ood_probe" in methods:
            pool = confidence.ood_pool_table(model, datasets, limit=o.limit_arg(args),
                                             train_limit=args.train_limit or None,
                                             backend=backend, source=args.source)
            path = confidence.save_table(pool, confidence.ood_pool_path(label, o.limit_arg(args)))
            print(f"wrote {path} ({len(pool)} rows: each target's own OOD probe on every dataset)")
        auc = metrics.auroc_table(table)
        print(auc.pivot(index="dataset", columns="method", values="auroc")
              .reindex(columns=methods).round(3).to_string())
        disc = confidence.discard_summary(table)
        if len(disc):
            print("discarded items (no usable confidence):")
            print(disc.to_string(index=False))
        if "jaccard_degree" in methods:
            print("jaccard_degree samples discarded (empty or naming no option):")
            print(confidence.sample_discards(model, datasets, o.limit_arg(args))
                  .to_string(index=False))
    return 0


def cmd_auroc(args) -> int:
    import pandas as pd
    from routelib.report import uq_page
    from routelib.uq import confidence, metrics
    o.check_models(args.model)
    tables = []
    for model in args.model:
        path = confidence.table_path(model, o.limit_arg(args))
        if not path.exists():
            raise o.CliError(f"no confidence table {path}; run `routelib uq --model {model} "
                             f"--limit {args.limit}` first")
        tables.append(pd.read_parquet(path))
    table = pd.concat(tables, ignore_index=True)
    auc = metrics.auroc_table(table, ci=True, n_boot=args.n_boot)
    print(uq_page.method_ranking(auc).to_string(index=False))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(uq_page.auroc_markdown(auc, table))
        print(f"wrote {args.markdown}")
    return 0


def cmd_probe(args) -> int:
    import numpy as np
    from routelib import data
    from routelib.models.factory import lazy_backend
    from routelib.uq import confidence, probe as P
    datasets = data.iter_datasets(args.dataset)
    o.check_models(args.model)
    feats = confidence.train_features(args.model, datasets, args.train_limit or None,
                                      backend=lazy_backend(args.model))
    X = np.concatenate([x for x, _ in feats.values()])
    y = np.concatenate([t for _, t in feats.values()])
    if len(np.unique(y)) < 2:
        raise o.CliError(f"the {len(y)} train-split items are all {'right' if y.any() else 'wrong'}"
                         "; a probe needs both classes: add datasets or raise --train-limit")
    fitted = P.MLPProbe(lr=args.lr).fit(X, y)
    fitted.trained_on_ = tuple(feats)
    fitted.save(args.out)
    print(f"wrote {args.out}: trained on {len(y)} train-split items of {len(feats)} datasets "
          f"({int(y.sum())} correct)")
    return 0


def cmd_import_outputs(args) -> int:
    from routelib.uq import imported
    imported.imported_dir(args.name)  # a bad name fails before the file is read
    keys = [k for k, _ in args.map]
    if len(set(keys)) != len(keys):
        raise o.CliError(f"--map: a routelib column is mapped twice ({', '.join(keys)})")
    conf, llm = imported.import_outputs(args.file, dict(args.map))
    where = imported.save_imported(conf, llm, args.name, conf.attrs["provenance"])
    print(f"imported {len(conf)} confidence rows ({conf['slm'].nunique()} SLM(s), "
          f"{conf['dataset'].nunique()} dataset(s), {conf['method'].nunique()} method(s)) and "
          f"{len(llm)} LLM rows from {args.file}")
    print(f"stored under {where}/ (confidence.parquet, "
          + ("llm.parquet, " if len(llm) else "") + "provenance.json)")
    return 0


def _add_uq(sub) -> None:
    u = sub.add_parser("uq", help="per-item confidence of UQ methods and AUROC (cached passes; "
                                  "prints what it will compute and a rough time first)",
                       description=UQ_DESCRIPTION)
    o.add_models(u, [config.REFERENCE_SLMS[0]], "SLM(s) whose confidence is computed")
    o.add_datasets(u)
    u.add_argument("--method", nargs="+", default=["all"],
                   help="UQ method(s) or 'all' (default; see routelib.uq.methods.METHODS)")
    o.add_limit(u)
    o.add_source(u)
    o.add_train_limit(u)
    o.add_batch_size(u)
    u.add_argument("--dry-run", action="store_true",
                   help="print what would be computed and the rough time, load no model")
    o.add_engine(u)
    o.add_slm_endpoint(u, "--model")
    u.set_defaults(func=cmd_uq)


def add(sub) -> None:
    _add_uq(sub)
    r = sub.add_parser("auroc", help="AUROC with bootstrap intervals and method ranking from "
                                     "saved confidence tables (no model)")
    o.add_models(r, config.REFERENCE_SLMS, "SLM(s) whose saved confidence tables are read")
    o.add_limit(r, what="the --limit the tables were made with (items per dataset)")
    r.add_argument("--n-boot", type=o.positive_int, default=config.N_BOOT,
                   help=f"bootstrap resamples, at least 1 (default {config.N_BOOT})")
    o.add_markdown(r, "the tables")
    r.set_defaults(func=cmd_auroc)

    pb = sub.add_parser("probe", help="train a correctness probe on train-split hidden states of "
                                      "several datasets and save it (for `route --probe`)")
    o.add_models(pb, config.REFERENCE_SLMS[0], "the SLM whose hidden states train it", many=False)
    o.alias(pb, "--slm", "model")
    o.add_datasets(pb, "train-split dataset(s)")
    o.add_train_limit(pb)
    pb.add_argument("--lr", type=o.positive_float, default=1e-4,
                    help="learning rate (default 1e-4, the OOD probe's)")
    pb.add_argument("--out", required=True, type=o.output_file, help="file to write (torch format)")
    pb.set_defaults(func=cmd_probe)

    im = sub.add_parser("import-outputs", help="store a per-item outputs table someone else made "
                                               "as a confidence table (see routelib.uq.imported)",
                        description="Read a CSV/TSV/parquet table with one row per (slm, "
                                    "dataset, item_id, method): confidence, correct, optionally "
                                    "discarded, model_id, llm and llm_correct; validate it and "
                                    "store it under $ROUTELIB_CACHE_DIR/imported/<name>/.")
    im.add_argument("file", type=o.existing_file, help="the table (.csv, .tsv or .parquet)")
    im.add_argument("--name", required=True,
                    help="name to store it under (letters, digits, '.', '_', '-')")
    im.add_argument("--map", nargs="+", type=o.mapping, default=[],
                    metavar="ROUTELIB_COL=FILE_COL",
                    help="columns of the file under other names, e.g. item_id=id "
                         "confidence=score (routelib's names: slm dataset item_id method "
                         "confidence correct discarded discard_reason model_id llm llm_correct)")
    im.set_defaults(func=cmd_import_outputs)
