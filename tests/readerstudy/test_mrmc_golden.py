"""readerstudy.mrmc against the outputs MRMCaov (R) publishes for its VanDyke worked example.

Data: tests/readerstudy/data/VanDyke.csv (where it comes from is written at its top).
Published numbers, copied from the printed R output:
- jackknife, empirical AUC: MRMCaov's README (brian-j-smith/MRMCaov README.md, "summary(est)" of
  `mrmc(empirical_auc(truth, rating), treatment, reader, case, data = VanDyke)`); the same variance
  components are printed by RJafroc's `UtilORVarComponentsFactorial(dataset02, FOM = "Wilcoxon")`;
- DeLong, empirical AUC; jackknife, binary sensitivity (rating >= 3); fixed-reader single-reader
  standard errors: MRMCaov's JSS paper draft (brian-j-smith/MRMCaov docs/jss/MRMCaov.tex).

R prints 7 significant digits, so each number is checked to 1e-6 or, where fewer than 6 decimals are
printed (df, F, t), to half a unit of the last printed digit.
"""
from pathlib import Path

import pandas as pd
import pytest

from readerstudy.mrmc import mrmc

DATA = Path(__file__).parent / "data" / "VanDyke.csv"


def close(value: float, printed: str) -> None:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    tolerance = max(1e-6, 0.5 * 10**-decimals * (1 + 1e-9))
    assert abs(value - float(printed)) <= tolerance, f"{value!r} != published {printed} (+/- {tolerance:g})"


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    df = pd.read_csv(DATA, comment="#").rename(columns={"treatment": "test"})
    df["truth"] = df["truth"].astype(bool)
    return df


def check_analysis(result, published) -> None:
    comps = result["variance_components"].iloc[0]
    for name, printed in published["components"].items():
        close(comps[name], printed)
    glob = result["global"].iloc[0]
    for name, printed in published["global"].items():
        close(glob[name], printed)
    diff = result["differences"].iloc[0]
    assert (diff["test_a"], diff["test_b"]) == (1, 2)
    for name, printed in published["difference"].items():
        close(diff[name], printed)
    tests = result["tests"].set_index("test")
    for test, row in published["tests"].items():
        for name, printed in row.items():
            close(tests.loc[test, name], printed)


JACKKNIFE_AUC = {
    "components": {"var_r": "0.0015349993", "var_tr": "0.0002004025", "var_error": "0.0008022883",
                   "cov1": "0.0003466137", "cov2": "0.0003440748", "cov3": "0.0002390284",
                   "ms_t": "0.004796171", "ms_tr": "0.0005510306", "ms_r": "0.0038362000"},
    "global": {"ms_t": "0.004796171", "ms_tr": "0.0005510306", "denominator": "0.001076263",
               "F": "4.456319", "df1": "1", "df2": "15.25967", "p_value": "0.05166569"},
    "difference": {"difference": "-0.04380032", "se": "0.02074862", "df": "15.25967",
                   "ci_low": "-0.0879594986", "ci_high": "0.0003588544", "t": "-2.110999",
                   "p_value": "0.05166569"},
    "tests": {
        1: {"estimate": "0.8970370", "ms_r": "0.003082629", "cov2": "0.0004839618", "se": "0.03317360",
            "df": "12.74465", "ci_low": "0.8252236", "ci_high": "0.9688505"},
        2: {"estimate": "0.9408374", "ms_r": "0.001304602", "cov2": "0.0002041879", "se": "0.02156637",
            "df": "12.71019", "ci_low": "0.8941378", "ci_high": "0.9875369"},
    },
}

DELONG_AUC = {
    "components": {"var_r": "0.0015364254", "var_tr": "0.0002045840", "var_error": "0.0007921325",
                   "cov1": "0.0003420090", "cov2": "0.0003395265", "cov3": "0.0002358497"},
    "global": {"ms_t": "0.004796171", "ms_tr": "0.0005510306", "denominator": "0.001069415",
               "F": "4.484854", "df1": "1", "df2": "15.06611", "p_value": "0.05123303"},
    "difference": {"difference": "-0.04380032", "se": "0.0206825", "df": "15.06611",
                   "ci_low": "-0.0878671960", "ci_high": "0.0002665519", "t": "-2.117747",
                   "p_value": "0.05123303"},
    "tests": {
        1: {"estimate": "0.8970370", "ms_r": "0.003082629", "cov2": "0.0004775239", "se": "0.03307642",
            "df": "12.59597", "ci_low": "0.8253461", "ci_high": "0.9687280"},
        2: {"estimate": "0.9408374", "ms_r": "0.001304602", "cov2": "0.0002015292", "se": "0.02150464",
            "df": "12.56530", "ci_low": "0.8942155", "ci_high": "0.9874592"},
    },
}

JACKKNIFE_SENSITIVITY = {
    "components": {"var_r": "0.0049747475", "var_tr": "0.0007828283", "var_error": "0.0023681257",
                   "cov1": "0.0009943883", "cov2": "0.0010145903", "cov3": "0.0006604938"},
    "global": {"ms_t": "0.02390123", "ms_tr": "0.001802469", "denominator": "0.003572952",
               "F": "6.689493", "df1": "1", "df2": "15.71732", "p_value": "0.02008822"},
    "difference": {"difference": "-0.09777778", "se": "0.03780451", "df": "15.71732",
                   "ci_low": "-0.1780371", "ci_high": "-0.0175185", "t": "-2.586405", "p_value": "0.02008822"},
    "tests": {
        1: {"estimate": "0.8222222", "ms_r": "0.009135802", "cov2": "0.001646465", "se": "0.05893747",
            "df": "14.456811", "ci_low": "0.6961876", "ci_high": "0.9482568"},
        # the upper limit, 1.0066..., is clipped to 1 as MRMCaov does
        2: {"estimate": "0.9200000", "ms_r": "0.005086420", "cov2": "0.000382716", "se": "0.03741657",
            "df": "7.575855", "ci_low": "0.8328691", "ci_high": "1.0000000"},
    },
}

# Fixed readers, jackknife: "Single reader 95% CIs" StdErr = sqrt of each reader's error variance.
READER_SE = {(1, 1): ("0.9196457", "0.0301255164"), (1, 2): ("0.8587762", "0.0363753335"),
             (1, 3): ("0.9038647", "0.0282594118"), (1, 4): ("0.9731079", "0.0173388332"),
             (1, 5): ("0.8297907", "0.0417201720"), (2, 1): ("0.9478261", "0.0221416887"),
             (2, 2): ("0.9053140", "0.0298151099"), (2, 3): ("0.9217391", "0.0297673065"),
             (2, 4): ("0.9993559", "0.0007213348"), (2, 5): ("0.9299517", "0.0262023046")}


def test_jackknife_auc_matches_mrmcaov(vandyke):
    check_analysis(mrmc(vandyke, fom="auc", covariance="jackknife"), JACKKNIFE_AUC)


def test_delong_auc_matches_mrmcaov(vandyke):
    check_analysis(mrmc(vandyke, fom="auc", covariance="delong"), DELONG_AUC)


def test_jackknife_binary_sensitivity_matches_mrmcaov(vandyke):
    binary = vandyke.assign(rating=(vandyke["rating"] >= 3).astype(int))
    result = mrmc(binary, fom="sensitivity")
    check_analysis(result, JACKKNIFE_SENSITIVITY)
    assert result["variance_components"].iloc[0]["n_cases"] == 45  # the jackknife runs over positives only


def test_reader_aucs_and_their_standard_errors_match_mrmcaov(vandyke):
    readers = mrmc(vandyke)["readers"].set_index(["test", "reader"])
    for key, (auc, se) in READER_SE.items():
        close(readers.loc[key, "estimate"], auc)
        close(readers.loc[key, "se"], se)


def test_labels_and_row_order_do_not_change_the_numbers(vandyke):
    shuffled = vandyke.sample(frac=1.0, random_state=3).assign(
        reader=lambda d: "reader-" + d["reader"].astype(str),
        case=lambda d: "case-" + d["case"].astype(str),
        test=lambda d: d["test"].map({1: "cine", 2: "spin-echo"}),
    )
    result = mrmc(shuffled)
    diff = result["differences"].iloc[0]
    assert (diff["test_a"], diff["test_b"]) == ("cine", "spin-echo")
    close(diff["p_value"], JACKKNIFE_AUC["difference"]["p_value"])
    close(result["tests"].set_index("test").loc["spin-echo", "se"], JACKKNIFE_AUC["tests"][2]["se"])
