# A researcher's first step with a Vertebra research export, in plain R (no packages):
# read codebook.csv, then every table with read.csv(colClasses = the codebook's r_class), giving
# closed value lists their levels. No manual fixes: read.csv stops on a value that does not fit
# its class, and a code outside a closed list would turn into NA, which is checked against the
# file's own "NA" cells.
#
#   Rscript read_research_export.R <export folder>
#
# Prints one line per table, then one line per numeric column, tab-separated, for the caller to
# compare with pandas:  table <name> <rows> <columns>  /  sum <table> <column> <non-NA> <sum>
args <- commandArgs(trailingOnly = TRUE)
folder <- args[[1]]
book <- read.csv(file.path(folder, "codebook.csv"), colClasses = "character",
                 na.strings = character(0))
for (table in unique(book$table)) {
  cols <- book[book$table == table, ]
  path <- file.path(folder, paste0(table, ".csv"))
  classes <- ifelse(cols$r_class == "factor", "character", cols$r_class)
  data <- read.csv(path, colClasses = setNames(classes, cols$name), na.strings = "NA")
  raw <- read.csv(path, colClasses = "character", na.strings = character(0))
  if (!identical(names(data), cols$name)) stop(table, ": columns differ from the codebook")
  for (i in seq_len(nrow(cols))) {
    name <- cols$name[[i]]
    if (cols$r_class[[i]] == "factor") {
      closed <- !grepl("other codes allowed", cols$values[[i]], fixed = TRUE)
      levels <- if (closed) strsplit(cols$codes[[i]], "|", fixed = TRUE)[[1]] else NULL
      data[[name]] <- if (is.null(levels)) factor(data[[name]]) else factor(data[[name]], levels)
    }
    if (sum(is.na(data[[name]])) != sum(raw[[name]] == "NA")) {
      stop(table, ".", name, ": a value does not fit its codebook entry")
    }
    if (cols$r_class[[i]] %in% c("integer", "numeric")) {
      cat("sum", table, name, sum(!is.na(data[[name]])),
          format(sum(as.numeric(data[[name]]), na.rm = TRUE), digits = 15), sep = "\t")
      cat("\n")
    }
  }
  cat("table", table, nrow(data), ncol(data), sep = "\t")
  cat("\n")
}
